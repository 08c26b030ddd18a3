package deploytest

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The paths the units use and setup.sh defaults to (TestUnits checks the
// units against them).
const (
	unitDataDir = "/var/lib/ledger"
	unitEnvFile = "/etc/ledger/ledger.env"
)

const (
	licenseID1 = "0193a5b0-7e1a-7c3d-8f00-00000000d001"
	licenseID2 = "0193a5b0-7e1a-7c3d-8f00-00000000d002"
)

var issued = time.Now().Add(-time.Hour).Truncate(time.Second)

// TestSetupInstallsLicense is an install and two renewals with the example
// config, in a temporary root, in every shell: the license lands as
// license.key or license.json with mode 0600, the env file gets exactly one
// LICENSE_FILE= line and keeps the rest, re-runs change nothing, and a new
// form replaces the other one's file.
func TestSetupInstallsLicense(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			conf := writeFile(t, filepath.Join(dir, "install.conf"), readFile(t, filepath.Join(deployDir, "install.conf.example")), 0o644)
			// As in the install steps: the env file starts as the template.
			template := string(readFile(t, filepath.Join(deployDir, "systemd", "ledger.env.example")))
			envFile := writeFile(t, filepath.Join(root, unitEnvFile), []byte(template), 0o640)
			dataDir := filepath.Join(root, unitDataDir)
			keyPath, jsonPath := filepath.Join(dataDir, "license.key"), filepath.Join(dataDir, "license.json")

			compact := instanceLicense(t, licenseID1, issued, nil)
			compactFile := writeFile(t, filepath.Join(dir, "vendor", "acme license.txt"), []byte(compact.Key+"\n"), 0o644)
			renewal := instanceLicense(t, licenseID2, issued.Add(time.Minute), nil)
			jsonFile := writeFile(t, filepath.Join(dir, "vendor", "renewal.lic"), append([]byte("\n \t"), renewal.EncodeJSON()...), 0o644)

			install := func(licenseFile, wantPath, gonePath string) {
				t.Helper()
				r := sh.run(t, nil, "--config", conf, "--license", licenseFile, "--root", root)
				mustOK(t, r)
				if got, want := string(readFile(t, wantPath)), string(readFile(t, licenseFile)); got != want {
					t.Fatalf("%s holds %q, want the bytes of %s", wantPath, got, licenseFile)
				}
				if m := mode(t, wantPath); m != 0o600 {
					t.Fatalf("%s has mode %04o, want 0600", wantPath, m)
				}
				if exists(t, gonePath) {
					t.Fatalf("%s still exists beside %s: the ledger refuses both", gonePath, wantPath)
				}
				if m := mode(t, dataDir); m != 0o750 {
					t.Fatalf("data dir has mode %04o, want 0750", m)
				}
				env := string(readFile(t, envFile))
				want := unitDataDir + "/" + filepath.Base(wantPath)
				if vals := envValues(t, env, "LICENSE_FILE"); len(vals) != 1 || vals[0] != want {
					t.Fatalf("LICENSE_FILE lines: %q, want exactly [%q]", vals, want)
				}
				// The template already sets DATA_DIR: the only change is the
				// LICENSE_FILE line, appended once and then replaced in place.
				if wantEnv := template + "LICENSE_FILE=" + want + "\n"; env != wantEnv {
					t.Fatalf("env file:\n%s\nwant:\n%s", env, wantEnv)
				}
				if m := mode(t, envFile); m != 0o640 {
					t.Fatalf("env file has mode %04o, want 0640 (kept)", m)
				}

				before := snapshot(t, root)
				r = sh.run(t, nil, "--config", conf, "--license", licenseFile, "--root", root)
				mustOK(t, r)
				if !strings.Contains(r.stdout, "nothing to change") {
					t.Errorf("second run did not say it had nothing to change:\n%s", r)
				}
				if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
					t.Fatalf("second run with the same inputs changed:\n%s", strings.Join(d, "\n"))
				}
			}
			install(compactFile, keyPath, jsonPath)
			install(jsonFile, jsonPath, keyPath)
			install(compactFile, keyPath, jsonPath)
		})
	}
}

// TestSetupCreatesEnvFile: no env file yet, a config with quotes, comments,
// a relative license.file and custom paths, and the root from SETUP_ROOT.
func TestSetupCreatesEnvFile(t *testing.T) {
	t.Parallel()
	sh := defaultShell(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "image")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	lic := instanceLicense(t, licenseID1, issued, nil)
	writeFile(t, filepath.Join(dir, "conf", "vendor", "license.json"), lic.EncodeJSON(), 0o600)
	conf := writeFile(t, filepath.Join(dir, "conf", "install.conf"), []byte(`# custom paths
data_dir: "/srv/ledger/"      # trailing slash is fine
env_file: '/etc/ledger-a/ledger.env'

license:   # the vendor's file
    file: vendor/license.json
`), 0o644)
	r := sh.run(t, []string{"SETUP_ROOT=" + root}, "--config", conf)
	mustOK(t, r)

	envFile := filepath.Join(root, "etc/ledger-a/ledger.env")
	env := string(readFile(t, envFile))
	got := envAssignments(t, env)
	want := [][2]string{{"DATA_DIR", "/srv/ledger"}, {"LICENSE_FILE", "/srv/ledger/license.json"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("new env file assigns %q, want %q:\n%s", got, want, env)
	}
	if m := mode(t, envFile); m != 0o640 {
		t.Fatalf("new env file has mode %04o, want 0640", m)
	}
	if b := readFile(t, filepath.Join(root, "srv/ledger/license.json")); string(b) != string(lic.EncodeJSON()) {
		t.Fatalf("license.json holds %q", b)
	}

	// --license overrides license.file.
	other := writeFile(t, filepath.Join(dir, "other.key"), []byte(lic.Key), 0o600)
	mustOK(t, sh.run(t, []string{"SETUP_ROOT=" + root}, "--config", conf, "--license="+other))
	if exists(t, filepath.Join(root, "srv/ledger/license.json")) || !exists(t, filepath.Join(root, "srv/ledger/license.key")) {
		t.Fatal("--license did not override license.file")
	}

	// Without --config the defaults apply.
	mustOK(t, sh.run(t, nil, "--root", root, "--license", other))
	if v := envValues(t, string(readFile(t, filepath.Join(root, unitEnvFile))), "LICENSE_FILE"); len(v) != 1 || v[0] != unitDataDir+"/license.key" {
		t.Fatalf("default env file has LICENSE_FILE %q", v)
	}
}

// TestSetupEditsEnvFile: LICENSE_FILE is set exactly once, in place of the
// first one; DATA_DIR is added only when absent; everything else stays,
// and so does the file's mode.
func TestSetupEditsEnvFile(t *testing.T) {
	t.Parallel()
	const lf = "LICENSE_FILE=" + unitDataDir + "/license.key"
	const dd = "DATA_DIR=" + unitDataDir
	cases := []struct {
		name, before, want, stderr string
	}{
		{"empty", "", dd + "\n" + lf + "\n", ""},
		{"no trailing newline", "LOG_LEVEL=debug", "LOG_LEVEL=debug\n" + dd + "\n" + lf + "\n", ""},
		{"duplicates and comments",
			"LOG_LEVEL=debug\n# LICENSE_FILE=/old/commented\nLICENSE_FILE=/old/a\n\nLEDGER_LISTEN=127.0.0.1:8080\n  LICENSE_FILE = /old/b\nDATA_DIR=/var/lib/ledger\n",
			"LOG_LEVEL=debug\n# LICENSE_FILE=/old/commented\n" + lf + "\n\nLEDGER_LISTEN=127.0.0.1:8080\nDATA_DIR=/var/lib/ledger\n", ""},
		{"quoted values kept", "LEDGER_ADMIN_TOKEN=\"a b c\"\nDATA_DIR=\"/var/lib/ledger\"\n",
			"LEDGER_ADMIN_TOKEN=\"a b c\"\nDATA_DIR=\"/var/lib/ledger\"\n" + lf + "\n", ""},
		{"other DATA_DIR kept, with a warning", "DATA_DIR=/data\n", "DATA_DIR=/data\n" + lf + "\n", "DATA_DIR=/data"},
		{"empty LICENSE_KEY is harmless", "LICENSE_KEY=\n", "LICENSE_KEY=\n" + dd + "\n" + lf + "\n", ""},
	}
	lic := instanceLicense(t, licenseID1, issued, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			licFile := writeFile(t, filepath.Join(dir, "l.key"), []byte(lic.Key), 0o644)
			envFile := writeFile(t, filepath.Join(dir, unitEnvFile), []byte(c.before), 0o600)
			r := defaultShell(t).run(t, nil, "--root", dir, "--license", licFile)
			mustOK(t, r)
			if got := string(readFile(t, envFile)); got != c.want {
				t.Fatalf("env file:\n%s\nwant:\n%s", got, c.want)
			}
			if m := mode(t, envFile); m != 0o600 {
				t.Fatalf("env file mode %04o, want its own 0600", m)
			}
			if c.stderr != "" && !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("stderr does not mention %q:\n%s", c.stderr, r)
			}
			if c.stderr == "" && r.stderr != "" {
				t.Fatalf("unexpected stderr:\n%s", r)
			}
		})
	}
}

// TestSetupErrors: every bad input stops with a non-zero exit and a
// message, before anything is written.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	lic := instanceLicense(t, licenseID1, issued, nil)
	type env struct{ dir, root, license string }
	conf := func(e env, text string) string {
		return writeFile(t, filepath.Join(e.dir, "install.conf"), []byte(text), 0o644)
	}
	cases := []struct {
		name   string
		args   func(e env) []string
		code   int
		stderr string
	}{
		{"missing config", func(e env) []string {
			return []string{"--config", filepath.Join(e.dir, "nope.conf"), "--license", e.license}
		}, 1, "nope.conf: no such file"},
		{"config is a directory", func(e env) []string { return []string{"--config", e.dir, "--license", e.license} }, 1, "not a regular file"},
		{"unknown config key", func(e env) []string {
			return []string{"--config", conf(e, "data_dir: /x\ndatadir: /y\n"), "--license", e.license}
		}, 1, "install.conf:2: unknown key datadir"},
		{"unknown license key", func(e env) []string {
			return []string{"--config", conf(e, "license:\n  path: /x\n"), "--license", e.license}
		}, 1, "unknown key license.path"},
		{"license with a value", func(e env) []string { return []string{"--config", conf(e, "license: /x\n")} }, 1, `license: takes "file: PATH"`},
		{"indented outside a section", func(e env) []string {
			return []string{"--config", conf(e, "  file: /x\n"), "--license", e.license}
		}, 1, "indented line outside a section"},
		{"duplicate key", func(e env) []string {
			return []string{"--config", conf(e, "data_dir: /a\ndata_dir: /b\n"), "--license", e.license}
		}, 1, "duplicate key data_dir"},
		{"unterminated quote", func(e env) []string {
			return []string{"--config", conf(e, "env_file: \"/etc/x\n"), "--license", e.license}
		}, 1, "unterminated"},
		{"not key: value", func(e env) []string {
			return []string{"--config", conf(e, "data_dir /x\n"), "--license", e.license}
		}, 1, "expected"},
		{"relative data_dir", func(e env) []string {
			return []string{"--config", conf(e, "data_dir: var/lib/ledger\n"), "--license", e.license}
		}, 1, "data_dir must be an absolute path"},
		{"data_dir with a blank", func(e env) []string {
			return []string{"--config", conf(e, "data_dir: \"/var/lib/my ledger\"\n"), "--license", e.license}
		}, 1, "use only letters"},
		{"relative env_file", func(e env) []string {
			return []string{"--config", conf(e, "env_file: ledger.env\n"), "--license", e.license}
		}, 1, "env_file must be an absolute path"},
		{"no license", func(e env) []string { return []string{"--root", e.root} }, 2, "no license"},
		{"missing license", func(e env) []string {
			return []string{"--license", filepath.Join(e.dir, "missing.key")}
		}, 1, "missing.key: no such file"},
		{"missing license.file", func(e env) []string {
			return []string{"--config", conf(e, "license:\n  file: gone.key\n")}
		}, 1, "gone.key: no such file"},
		{"empty license", func(e env) []string {
			return []string{"--license", writeFile(t, filepath.Join(e.dir, "empty.key"), nil, 0o600)}
		}, 1, "empty"},
		{"blank license", func(e env) []string {
			return []string{"--license", writeFile(t, filepath.Join(e.dir, "blank.key"), []byte(" \n\t\r\n"), 0o600)}
		}, 1, "empty"},
		{"license is a directory", func(e env) []string { return []string{"--license", e.dir} }, 1, "not a regular file"},
		{"oversized license", func(e env) []string {
			return []string{"--license", writeFile(t, filepath.Join(e.dir, "big.key"), []byte(strings.Repeat("a", 65537)), 0o600)}
		}, 1, "at most 65536"},
		{"LICENSE_KEY in the env file", func(e env) []string {
			writeFile(t, filepath.Join(e.root, unitEnvFile), []byte("LOG_LEVEL=info\nLICENSE_KEY=hfl1.k1.x.y\n"), 0o640)
			return []string{"--license", e.license}
		}, 1, "sets LICENSE_KEY"},
		{"env file is a directory", func(e env) []string {
			if err := os.MkdirAll(filepath.Join(e.root, unitEnvFile), 0o755); err != nil {
				t.Fatal(err)
			}
			return []string{"--license", e.license}
		}, 1, "not a regular file"},
		{"data_dir is a file", func(e env) []string {
			writeFile(t, filepath.Join(e.root, unitDataDir), []byte("x"), 0o600)
			return []string{"--license", e.license}
		}, 1, "not a directory"},
		{"root is not a directory", func(e env) []string {
			return []string{"--license", e.license, "--root", filepath.Join(e.dir, "nowhere")}
		}, 1, "not a directory"},
		{"unknown option", func(e env) []string { return []string{"--license", e.license, "--force"} }, 2, "unknown argument: --force"},
		{"option without value", func(e env) []string { return []string{"--root", e.root, "--license"} }, 2, "--license needs a value"},
		{"empty option value", func(e env) []string { return []string{"--config=", "--license", e.license} }, 2, "--config needs a value"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name   string
			args   func(e env) []string
			code   int
			stderr string
		}{"owner does not exist", func(e env) []string {
			return []string{"--config", conf(e, "owner: no-such-user-x9\n"), "--license", e.license}
		}, 1, "owner no-such-user-x9: no such user"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e := env{dir: dir, root: filepath.Join(dir, "root")}
			if err := os.Mkdir(e.root, 0o755); err != nil {
				t.Fatal(err)
			}
			e.license = writeFile(t, filepath.Join(dir, "license.key"), []byte(lic.Key), 0o600)
			args := c.args(e)
			hasRoot := false
			for _, a := range args {
				hasRoot = hasRoot || a == "--root"
			}
			if !hasRoot {
				args = append(args, "--root", e.root)
			}
			before := snapshot(t, e.root)
			r := defaultShell(t).run(t, nil, args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d:\n%s", r.code, c.code, r)
			}
			if !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("stderr does not say %q:\n%s", c.stderr, r)
			}
			if d := diffSnapshots(before, snapshot(t, e.root)); len(d) > 0 {
				t.Fatalf("a failed run changed files:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// TestSetupUnreadableLicense runs setup.sh as a user who cannot read the
// license (nobody, when the tests run as root).
func TestSetupUnreadableLicense(t *testing.T) {
	t.Parallel()
	sh := defaultShell(t)
	dir := t.TempDir()
	lic := instanceLicense(t, licenseID1, issued, nil)
	licFile := writeFile(t, filepath.Join(dir, "license.key"), []byte(lic.Key), 0o600)
	script := setupScript
	var prepare func(*exec.Cmd)
	if os.Geteuid() == 0 {
		// nobody must reach the script and the root, not the license.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		script = writeFile(t, filepath.Join(dir, "setup.sh"), readFile(t, setupScript), 0o755)
		prepare = asUser(65534, 65534)
		if prepare == nil {
			t.Skip("cannot run as another user here")
		}
		probe := exec.Command(sh.argv[0], "-c", "test -r \"$1\"", "probe", script)
		prepare(probe)
		if err := probe.Run(); err != nil {
			t.Skipf("nobody cannot read %s (%v): a parent directory is closed", script, err)
		}
	} else if err := os.Chmod(licFile, 0); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	r := sh.runScript(t, script, nil, prepare, "--license", licFile, "--root", root)
	if r.code != 1 || !strings.Contains(r.stderr, "not readable") {
		t.Fatalf("want exit 1 and 'not readable':\n%s", r)
	}
	if d := diffSnapshots(map[string]string{}, snapshot(t, root)); len(d) != 1 { // the root itself
		t.Fatalf("a failed run wrote: %q", d)
	}
}

// TestSetupOwner (as root): owner: hands data_dir and the license to that
// user; without it the license gets data_dir's owner, as systemd leaves it
// once the ledger has run.
func TestSetupOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Skipf("no user 65534: %v", err)
	}
	sh := defaultShell(t)
	dir := t.TempDir()
	lic := instanceLicense(t, licenseID1, issued, nil)
	licFile := writeFile(t, filepath.Join(dir, "license.key"), []byte(lic.Key), 0o600)
	conf := writeFile(t, filepath.Join(dir, "install.conf"), []byte("owner: "+nobody.Username+"\n"), 0o644)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mustOK(t, sh.run(t, nil, "--config", conf, "--license", licFile, "--root", root))
	dataDir := filepath.Join(root, unitDataDir)
	for _, p := range []string{dataDir, filepath.Join(dataDir, "license.key")} {
		if uid := ownerOf(t, p); uid != 65534 {
			t.Fatalf("%s is owned by %d, want 65534", p, uid)
		}
	}
	before := snapshot(t, root)
	mustOK(t, sh.run(t, nil, "--config", conf, "--license", licFile, "--root", root))
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("second run changed:\n%s", strings.Join(d, "\n"))
	}

	// No owner: the JSON copy follows data_dir's owner.
	jsonFile := writeFile(t, filepath.Join(dir, "license.json"), lic.EncodeJSON(), 0o600)
	mustOK(t, sh.run(t, nil, "--license", jsonFile, "--root", root))
	if uid := ownerOf(t, filepath.Join(dataDir, "license.json")); uid != 65534 {
		t.Fatalf("license.json is owned by %d, want data_dir's owner 65534", uid)
	}
}

func ownerOf(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no owner information on this system")
	}
	return st.Uid
}

func TestSetupHelp(t *testing.T) {
	t.Parallel()
	r := defaultShell(t).run(t, nil, "--help")
	mustOK(t, r)
	for _, s := range []string{"--config", "--license", "--root", "SETUP_ROOT", "--validate", "license.json", "license.key", "LICENSE_FILE"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("--help does not mention %s", s)
		}
	}
}

// TestSetupShellcheck lints setup.sh as POSIX sh when shellcheck is
// installed.
func TestSetupShellcheck(t *testing.T) {
	t.Parallel()
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	out, err := exec.Command(sc, "--shell=sh", setupScript).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}
