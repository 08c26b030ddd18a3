#!/bin/sh
# deploy/setup.sh: put the install-time license of a single-node ledger where
# ledger.service reads it. `setup.sh --help` explains; docs/deploy-single-node.md
# shows it in the install steps.
set -eu

prog=${0##*/}

usage() {
	cat <<'USAGE'
Usage: setup.sh [--config FILE] [--license FILE] [--root DIR] [--validate]

Installs the ledger's install-time license (docs/design.md section 5.4):
  - creates data_dir (mode 0750) if it does not exist;
  - copies the license into it, mode 0600, as license.json when its first
    non-space byte is '{' (the JSON form), else as license.key (the compact
    key), and removes the other form's file (the ledger refuses both);
  - sets the one LICENSE_FILE=<that path> line of env_file (created with mode
    0640 if absent; every other line is kept), and adds DATA_DIR=<data_dir>
    when the file has no DATA_DIR line.
Running it again with the same inputs changes nothing. Restart the ledger
afterwards (systemctl restart ledger): it imports the license at start.

Options:
  --config FILE   install.conf (see deploy/install.conf.example). Without it:
                  data_dir /var/lib/ledger, env_file /etc/ledger/ledger.env
  --license FILE  the license file, either form; overrides license.file
  --root DIR      write under DIR instead of / (an image, a test): data_dir
                  and env_file are prefixed with DIR, while the env file
                  still names the paths as the installed system sees them.
                  Default: $SETUP_ROOT, else /
  --validate      check the license first with `ledger license inspect`
                  (key ring from LICENSE_PUBLIC_KEYS[_FILE] in the
                  environment, else in env_file) and refuse one the ledger
                  would not import; skipped with a warning when no `ledger`
                  binary is on PATH
  -h, --help      show this text

Exit status: 0 done or nothing to change, 1 error, 2 bad usage.
USAGE
}

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

usage_error() {
	printf '%s: %s\n' "$prog" "$*" >&2
	printf "Try '%s --help'.\n" "$prog" >&2
	exit 2
}

warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
say() { printf '%s\n' "$*"; }

# Temporary files live next to their destination (same file system, so the
# final mv is atomic) and are removed on any exit.
tmp_license=
tmp_env=
tmp_err=
tmp_new=
cleanup() {
	for f in "$tmp_license" "$tmp_env" "$tmp_err" "$tmp_new"; do
		[ -z "$f" ] || rm -f "$f"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
umask 077

# --- command line -------------------------------------------------------------
config=
license_arg=
root=${SETUP_ROOT-}
validate=
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--validate)
		validate=1
		shift
		continue
		;;
	--config | --license | --root)
		[ $# -ge 2 ] || usage_error "$1 needs a value"
		opt=$1
		val=$2
		shift 2
		;;
	--config=* | --license=* | --root=*)
		opt=${1%%=*}
		val=${1#*=}
		shift
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
	[ -n "$val" ] || usage_error "$opt needs a value"
	case $opt in
	--config) config=$val ;;
	--license) license_arg=$val ;;
	--root) root=$val ;;
	esac
done

if [ -n "$root" ]; then
	[ -d "$root" ] || die "root $root: not a directory"
	root=$(cd "$root" && pwd -P) || die "root $root: cannot enter it"
	[ "$root" != / ] || root=
fi

# --- install.conf ---------------------------------------------------------------
# parse_config FILE prints "key<TAB>value" lines (data_dir, env_file, owner,
# license.file), or explains on stderr what is wrong and fails.
parse_config() {
	awk '
	function fail(msg) {
		printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
		exit 1
	}
	# value strips blanks, quotes and a trailing comment.
	function value(v,   c, i, after) {
		sub(/^[ \t]+/, "", v)
		c = substr(v, 1, 1)
		if (c == "\"" || c == "\047") {
			i = index(substr(v, 2), c)
			if (i == 0)
				fail("unterminated " c " quote")
			after = substr(v, i + 2)
			if (after !~ /^[ \t]*(#.*)?$/)
				fail("unexpected text after the closing quote: " after)
			return substr(v, 2, i - 1)
		}
		if (v ~ /^#/)
			return ""
		if (match(v, /[ \t]#/))
			v = substr(v, 1, RSTART - 1)
		sub(/[ \t]+$/, "", v)
		return v
	}
	{ sub(/\r$/, "") }
	/^[ \t]*(#.*)?$/ { next }
	{
		match($0, /^[ \t]*/)
		indent = RLENGTH
		rest = substr($0, indent + 1)
		if (!match(rest, /^[A-Za-z_][A-Za-z0-9_]*[ \t]*:/))
			fail("expected \"key: value\", got: " rest)
		key = substr(rest, 1, RLENGTH - 1)
		sub(/[ \t]+$/, "", key)
		val = value(substr(rest, RLENGTH + 1))
		if (indent == 0) {
			section = ""
			if (key == "license") {
				if (val != "")
					fail("license: takes \"file: PATH\" on the next line, indented")
				if ("license" in seen)
					fail("duplicate key license")
				seen["license"] = 1
				section = "license"
				next
			}
			if (key != "data_dir" && key != "env_file" && key != "owner")
				fail("unknown key " key " (known: data_dir, env_file, owner, license)")
			name = key
		} else {
			if (section == "")
				fail("indented line outside a section: " rest)
			if (key != "file")
				fail("unknown key " section "." key " (known: license.file)")
			name = section "." key
		}
		if (name in seen)
			fail("duplicate key " name)
		seen[name] = 1
		if (val == "")
			fail(name ": empty value")
		printf "%s\t%s\n", name, val
	}
	' "$1"
}

data_dir=/var/lib/ledger
env_file=/etc/ledger/ledger.env
owner=
conf_license=
if [ -n "$config" ]; then
	[ -e "$config" ] || die "config $config: no such file"
	[ -f "$config" ] || die "config $config: not a regular file"
	[ -r "$config" ] || die "config $config: not readable (permission denied)"
	parsed=$(parse_config "$config") || die "config $config is not valid (see above)"
	tab=$(printf '\t')
	while IFS=$tab read -r key val; do
		case $key in
		data_dir) data_dir=$val ;;
		env_file) env_file=$val ;;
		owner) owner=$val ;;
		license.file)
			conf_license=$val
			# A relative license.file is relative to the config file.
			case $conf_license in
			/*) ;;
			*) conf_license=$(dirname "$config")/$conf_license ;;
			esac
			;;
		esac
	done <<EOF
$parsed
EOF
fi

# The ledger reads data_dir through DATA_DIR and LICENSE_FILE lines of a
# systemd environment file: keep those paths absolute and free of blanks,
# quotes and backslashes, so they need no quoting there.
data_dir=$(printf '%s\n' "$data_dir" | sed 's#//*$##')
case $data_dir in
/*) ;;
'') die "data_dir must not be /" ;;
*) die "data_dir must be an absolute path: $data_dir" ;;
esac
case $data_dir in
*[!A-Za-z0-9._/@+,:=-]*) die "data_dir $data_dir: use only letters, digits and . _ / @ + , : = - (it is written to a systemd environment file)" ;;
esac
case $env_file in
/*) ;;
*) die "env_file must be an absolute path: $env_file" ;;
esac
case $env_file in
*/) die "env_file must be a file, not a directory: $env_file" ;;
esac

src=${license_arg:-$conf_license}
[ -n "$src" ] || usage_error "no license: pass --license FILE or set license.file in the config"

# --- checks: nothing is changed before every input is known to be usable -------
[ -e "$src" ] || die "license $src: no such file"
[ -f "$src" ] || die "license $src: not a regular file"
[ -r "$src" ] || die "license $src: not readable (permission denied)"
size=$(wc -c <"$src") || die "license $src: cannot read it"
size=$((size + 0))
[ "$size" -le 65536 ] || die "license $src: $size bytes; a license has at most 65536"
first=$(tr -d '[:space:]' <"$src" | dd bs=1 count=1 2>/dev/null) || die "license $src: cannot read it"
[ -n "$first" ] || die "license $src: empty (no license in it)"
if [ "$first" = "{" ]; then
	name=license.json
	other=license.key
	form=JSON
else
	name=license.key
	other=license.json
	form=compact
fi

data_path=$root$data_dir
env_path=$root$env_file
dest=$data_path/$name
other_path=$data_path/$other
license_file=$data_dir/$name

# env_get FILE NAME prints the value of the last NAME= line of a systemd
# environment file (surrounding quotes removed), or nothing.
env_get() {
	awk -v k="$2" '
	{ sub(/\r$/, "") }
	$0 ~ "^[ \t]*" k "[ \t]*=" {
		v = $0
		sub(/^[^=]*=[ \t]*/, "", v)
		sub(/[ \t]+$/, "", v)
		q = substr(v, 1, 1)
		if (length(v) >= 2 && (q == "\"" || q == "\047") && substr(v, length(v), 1) == q)
			v = substr(v, 2, length(v) - 2)
		found = 1
	}
	END { if (found) print v }
	' "$1"
}

if [ -e "$env_path" ] || [ -L "$env_path" ]; then
	[ -f "$env_path" ] || die "env file $env_path: not a regular file"
	[ -r "$env_path" ] || die "env file $env_path: not readable (permission denied)"
	[ -w "$env_path" ] || die "env file $env_path: not writable (permission denied)"
	if [ -n "$(env_get "$env_path" LICENSE_KEY)" ]; then
		die "env file $env_path sets LICENSE_KEY: the ledger refuses it together with LICENSE_FILE; remove that line and run again"
	fi
	env_data_dir=$(env_get "$env_path" DATA_DIR)
	if [ -n "$env_data_dir" ] && [ "${env_data_dir%/}" != "$data_dir" ]; then
		warn "env file $env_path has DATA_DIR=$env_data_dir, not $data_dir (data_dir); left as it is"
	fi
fi
if [ -e "$data_path" ] && [ ! -d "$data_path" ]; then
	die "data_dir $data_path exists and is not a directory"
fi
if [ -d "$dest" ]; then
	die "$dest is a directory"
fi

is_root=
[ "$(id -u)" -ne 0 ] || is_root=1
owner_spec=
if [ -n "$owner" ]; then
	if [ -n "$is_root" ]; then
		uid=$(id -u "$owner" 2>/dev/null) || die "owner $owner: no such user (create it first, or drop owner: from the config)"
		gid=$(id -g "$owner")
		owner_spec=$uid:$gid
	elif [ "$(id -un)" != "$owner" ]; then
		warn "not running as root: files stay owned by $(id -un), not $owner"
	fi
fi

# --- optional: would the ledger import it? -------------------------------------
if [ -n "$validate" ]; then
	if ! command -v ledger >/dev/null 2>&1; then
		warn "--validate: no ledger binary on PATH; the license was not checked"
	else
		keys=${LICENSE_PUBLIC_KEYS-}
		keys_file=${LICENSE_PUBLIC_KEYS_FILE-}
		grace=${LICENSE_GRACE_DAYS-}
		if [ -f "$env_path" ]; then
			[ -n "$keys" ] || keys=$(env_get "$env_path" LICENSE_PUBLIC_KEYS)
			if [ -z "$keys_file" ]; then
				keys_file=$(env_get "$env_path" LICENSE_PUBLIC_KEYS_FILE)
				case $keys_file in
				/*) keys_file=$root$keys_file ;;
				esac
			fi
			[ -n "$grace" ] || grace=$(env_get "$env_path" LICENSE_GRACE_DAYS)
		fi
		case $src in
		-*) check_src=./$src ;;
		*) check_src=$src ;;
		esac
		tmp_err=$(mktemp "${TMPDIR:-/tmp}/setup-validate.XXXXXX")
		rc=0
		report=$(
			unset LICENSE_PUBLIC_KEYS LICENSE_PUBLIC_KEYS_FILE LICENSE_GRACE_DAYS
			[ -z "$keys" ] || export LICENSE_PUBLIC_KEYS="$keys"
			[ -z "$keys_file" ] || export LICENSE_PUBLIC_KEYS_FILE="$keys_file"
			[ -z "$grace" ] || export LICENSE_GRACE_DAYS="$grace"
			exec ledger license inspect --org _instance "$check_src" 2>"$tmp_err"
		) || rc=$?
		if [ "$rc" -ne 0 ]; then
			cat "$tmp_err" >&2
			die "--validate: ledger license inspect failed (exit $rc)"
		fi
		status=$(printf '%s\n' "$report" | sed -n 's/^[[:space:]]*"status":[[:space:]]*"\([a-z_]*\)".*/\1/p' | sed -n 1p)
		reason=$(printf '%s\n' "$report" | sed -n 's/^[[:space:]]*"reason":[[:space:]]*"\([a-z_]*\)".*/\1/p' | sed -n 1p)
		case $status in
		valid | grace)
			say "license checked: $status ($(sed -n 1p "$tmp_err"))"
			;;
		invalid)
			if [ "$reason" = not_yet_valid ]; then
				say "license checked: not valid before its not_before; the ledger keeps it pending until then"
			else
				cat "$tmp_err" >&2
				hint=
				if [ "$reason" = unknown_key ] && [ -z "$keys$keys_file" ]; then
					hint=" (no trusted keys: set LICENSE_PUBLIC_KEYS_FILE in $env_path or in the environment)"
				fi
				die "--validate: the ledger would not import this license: invalid, $reason$hint"
			fi
			;;
		expired)
			ends=$(printf '%s\n' "$report" | sed -n 's/^[[:space:]]*"grace_ends":[[:space:]]*"\([^"]*\)".*/\1/p' | sed -n 1p)
			die "--validate: the ledger would not import this license: expired, grace ended ${ends:-already}"
			;;
		*)
			printf '%s\n' "$report" >&2
			cat "$tmp_err" >&2
			die "--validate: no status in the output of ledger license inspect"
			;;
		esac
	fi
fi

# --- data_dir -------------------------------------------------------------------
changed=
if [ ! -d "$data_path" ]; then
	parent=$(dirname "$data_path")
	(umask 022 && mkdir -p "$parent") || die "cannot create $parent"
	mkdir -m 0750 "$data_path" || die "cannot create $data_path"
	say "created $data_path (mode 0750)"
	changed=1
fi
# ids prints "uid:gid" of a path. (ls only for fields before the name, which
# any file name leaves intact; stat has no portable option for this.)
# shellcheck disable=SC2012
ids() { ls -nd "$1" | awk '{ print $3 ":" $4 }'; }
if [ -n "$owner_spec" ] && [ "$(ids "$data_path")" != "$owner_spec" ]; then
	chown "$owner_spec" "$data_path" || die "cannot chown $data_path to $owner"
	say "owner of $data_path: $owner"
	changed=1
fi
# The license belongs to whoever owns data_dir: the ledger's user once
# systemd has set up its StateDirectory.
license_owner=
if [ -n "$is_root" ]; then
	license_owner=$(ids "$data_path")
fi

# --- the license copy ---------------------------------------------------------
[ -w "$data_path" ] || die "data_dir $data_path: not writable (permission denied)"
if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest"; then
	:
else
	tmp_license=$(mktemp "$data_path/.license.XXXXXX") || die "cannot write in $data_path"
	cat "$src" >"$tmp_license" || die "cannot copy $src"
	chmod 0600 "$tmp_license"
	[ -z "$license_owner" ] || chown "$license_owner" "$tmp_license"
	mv -f "$tmp_license" "$dest" || die "cannot install $dest"
	tmp_license=
	say "installed $dest ($form form, mode 0600)"
	changed=1
fi
# shellcheck disable=SC2012
mode=$(ls -ld "$dest" | cut -c1-10)
if [ "$mode" != "-rw-------" ]; then
	chmod 0600 "$dest"
	say "mode of $dest: 0600 (was $mode)"
	changed=1
fi
if [ -n "$license_owner" ] && [ "$(ids "$dest")" != "$license_owner" ]; then
	chown "$license_owner" "$dest"
	say "owner of $dest: $license_owner"
	changed=1
fi

# --- the env file ---------------------------------------------------------------
# set_lines rewrites an environment file on stdin: the first LICENSE_FILE=
# line becomes LICENSE_FILE=$license_file, later ones go, and DATA_DIR= and
# LICENSE_FILE= are appended when missing. Every other line is kept as is.
set_lines() {
	SETUP_LICENSE_FILE=$license_file SETUP_DATA_DIR=$data_dir awk '
	BEGIN { lf = ENVIRON["SETUP_LICENSE_FILE"]; dd = ENVIRON["SETUP_DATA_DIR"] }
	/^[ \t]*LICENSE_FILE[ \t]*=/ {
		if (!done)
			print "LICENSE_FILE=" lf
		done = 1
		next
	}
	/^[ \t]*DATA_DIR[ \t]*=/ { has_data_dir = 1 }
	{ print }
	END {
		if (!has_data_dir)
			print "DATA_DIR=" dd
		if (!done)
			print "LICENSE_FILE=" lf
	}
	'
}
env_dir=$(dirname "$env_path")
if [ -f "$env_path" ]; then
	# The new text is compared first, outside env_dir, so that a run with
	# nothing to change touches nothing.
	tmp_env=$(mktemp "${TMPDIR:-/tmp}/setup-env.XXXXXX") || die "cannot create a temporary file"
	set_lines <"$env_path" >"$tmp_env" || die "cannot rewrite $env_path"
	if ! cmp -s "$tmp_env" "$env_path"; then
		# Fill a copy of the file, so that its mode and owner carry over,
		# then put it in place at once.
		tmp_new=$(mktemp "$env_dir/.${env_path##*/}.XXXXXX") || die "cannot write in $env_dir"
		if ! { cp -p "$env_path" "$tmp_new" && cat "$tmp_env" >"$tmp_new" && mv -f "$tmp_new" "$env_path"; }; then
			die "cannot replace $env_path"
		fi
		tmp_new=
		say "set LICENSE_FILE=$license_file in $env_path"
		changed=1
	fi
	rm -f "$tmp_env"
	tmp_env=
else
	(umask 022 && mkdir -p "$env_dir") || die "cannot create $env_dir"
	tmp_env=$(mktemp "$env_dir/.${env_path##*/}.XXXXXX") || die "cannot write in $env_dir"
	{
		echo "# Environment of ledger.service, written by deploy/setup.sh."
		echo "# Every variable, with its default: deploy/systemd/ledger.env.example."
		set_lines </dev/null
	} >"$tmp_env"
	chmod 0640 "$tmp_env"
	mv -f "$tmp_env" "$env_path" || die "cannot create $env_path"
	tmp_env=
	say "created $env_path (mode 0640) with LICENSE_FILE=$license_file"
	changed=1
fi

# Only now that LICENSE_FILE names the new copy: a ledger started at any
# point of this script finds one license.
if [ -e "$other_path" ] || [ -L "$other_path" ]; then
	rm -f "$other_path" || die "cannot remove $other_path"
	say "removed $other_path (the ledger refuses both forms)"
	changed=1
fi

if [ -n "$changed" ]; then
	say "done: restart the ledger to import the license (systemctl restart ledger)"
else
	say "nothing to change: $dest and $env_path are up to date"
fi
