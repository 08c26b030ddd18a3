package deploytest

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var systemdDir = filepath.Join(deployDir, "systemd")

// unit is a parsed systemd unit file: section → key → every assignment, in
// order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		for strings.HasSuffix(line, "\\") && sc.Scan() { // continuation
			n++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(sc.Text())
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: not key=value in a section: %q", n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the effective value of a single-valued setting.
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// words is every word of a list setting (an empty assignment resets it).
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		if v == "" {
			out = nil
			continue
		}
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func boolValue(v string) string {
	switch strings.ToLower(v) {
	case "yes", "true", "1", "on":
		return "yes"
	case "no", "false", "0", "off":
		return "no"
	}
	return v
}

// hardening lists the [Service] settings both units must have, with their
// effective values (booleans normalised to yes).
var hardening = map[string]string{
	"NoNewPrivileges":        "yes",
	"ProtectSystem":          "strict",
	"ProtectHome":            "yes",
	"PrivateTmp":             "yes",
	"PrivateDevices":         "yes",
	"ProtectKernelTunables":  "yes",
	"ProtectKernelModules":   "yes",
	"ProtectKernelLogs":      "yes",
	"ProtectControlGroups":   "yes",
	"RestrictNamespaces":     "yes",
	"LockPersonality":        "yes",
	"MemoryDenyWriteExecute": "yes",
	"Restart":                "on-failure",
	"ExecReload":             "/bin/kill -HUP $MAINPID",
}

// checkUnit returns what is wrong with a unit: the hardening above, an
// empty capability bounding set, the address families, the system call
// filter, the file limit, the ordering after the network, the user, the
// environment file and the binary.
func checkUnit(u unit, name string) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	for k, want := range hardening {
		v, ok := u.last("Service", k)
		if !ok {
			fail("%s missing", k)
		} else if boolValue(v) != want {
			fail("%s=%s, want %s", k, v, want)
		}
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if vs := u["Service"][k]; len(vs) == 0 || len(u.words("Service", k)) != 0 {
			fail("%s must be set, and empty: %q", k, vs)
		}
	}
	families := u.words("Service", "RestrictAddressFamilies")
	slices.Sort(families)
	if !slices.Equal(families, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
		fail("RestrictAddressFamilies=%q, want AF_INET AF_INET6 AF_UNIX", families)
	}
	if filters := u["Service"]["SystemCallFilter"]; len(filters) == 0 || !slices.Contains(strings.Fields(filters[0]), "@system-service") || slices.Contains(filters, "") {
		fail("SystemCallFilter=%q, want @system-service first, never reset", filters)
	}
	nofile, _ := u.last("Service", "LimitNOFILE")
	if n, err := strconv.Atoi(nofile); err != nil || n < 4096 {
		fail("LimitNOFILE=%q, want a number >= 4096", nofile)
	}
	if !slices.Contains(u.words("Unit", "After"), "network-online.target") || !slices.Contains(u.words("Unit", "Wants"), "network-online.target") {
		fail("want After= and Wants=network-online.target")
	}
	if v, _ := u.last("Service", "User"); v != "ledger" {
		fail("User=%q, want ledger", v)
	}
	if v, _ := u.last("Service", "DynamicUser"); boolValue(v) == "yes" {
		fail("DynamicUser=yes: the reader seed is the ledger user's")
	}
	if v, _ := u.last("Service", "EnvironmentFile"); v != "/etc/ledger/"+name+".env" {
		fail("EnvironmentFile=%q, want /etc/ledger/%s.env", v, name)
	}
	if !slices.Contains(u["Service"]["Environment"], "DATA_DIR="+unitDataDir) {
		fail("want Environment=DATA_DIR=%s", unitDataDir)
	}
	exec := map[string]string{"ledger": "/usr/local/bin/ledger serve", "gatekeeper": "/usr/local/bin/gatekeeper"}[name]
	if v, _ := u.last("Service", "ExecStart"); v != exec {
		fail("ExecStart=%q, want %q", v, exec)
	}
	if _, ok := u["Install"]["WantedBy"]; !ok {
		fail("no [Install] WantedBy=")
	}
	switch name {
	case "ledger":
		// The state directory is DATA_DIR, the only writable path.
		if v, _ := u.last("Service", "StateDirectory"); "/var/lib/"+v != unitDataDir {
			fail("StateDirectory=%q, want DATA_DIR %s", v, unitDataDir)
		}
		if v, _ := u.last("Service", "StateDirectoryMode"); v != "0750" {
			fail("StateDirectoryMode=%q, want 0750 (as setup.sh creates it)", v)
		}
		if v, _ := u.last("Service", "EnvironmentFile"); v != unitEnvFile {
			fail("EnvironmentFile=%q, want setup.sh's default %s", v, unitEnvFile)
		}
	case "gatekeeper":
		if !slices.Contains(u.words("Unit", "After"), "ledger.service") || !slices.Contains(u.words("Unit", "Wants"), "ledger.service") {
			fail("want After= and Wants=ledger.service")
		}
		if _, ok := u["Service"]["StateDirectory"]; ok {
			fail("StateDirectory= in the gatekeeper: the state is the ledger's")
		}
		// Of the ledger's state, only the reader seed is visible.
		if v, _ := u.last("Service", "TemporaryFileSystem"); v != unitDataDir+":ro" {
			fail("TemporaryFileSystem=%q, want %s:ro", v, unitDataDir)
		}
		if v := u.words("Service", "BindReadOnlyPaths"); !slices.Equal(v, []string{unitDataDir + "/nats/reader.nk"}) {
			fail("BindReadOnlyPaths=%q, want only %s/nats/reader.nk", v, unitDataDir)
		}
	}
	return bad
}

func TestUnits(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ledger", "gatekeeper"} {
		t.Run(name, func(t *testing.T) {
			text := string(readFile(t, filepath.Join(systemdDir, name+".service")))
			u := parseUnit(t, text)
			if bad := checkUnit(u, name); len(bad) > 0 {
				t.Fatalf("%s.service:\n%s", name, strings.Join(bad, "\n"))
			}
			// The check catches a weakened unit.
			for _, weaken := range []struct{ from, to string }{
				{"ProtectSystem=strict", "ProtectSystem=full"},
				{"CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"},
				{"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK"},
				{"MemoryDenyWriteExecute=yes", "MemoryDenyWriteExecute=no"},
				{"SystemCallFilter=@system-service", "SystemCallFilter=~@mount"},
			} {
				from, to := "\n"+weaken.from, "\n"+weaken.to // whole lines, not comments
				if !strings.Contains(text, from) {
					t.Fatalf("%s.service has no line %q", name, weaken.from)
				}
				if bad := checkUnit(parseUnit(t, strings.Replace(text, from, to, 1)), name); len(bad) == 0 {
					t.Errorf("%q → %q went unnoticed", weaken.from, weaken.to)
				}
			}
		})
	}
}

// TestUnitsVerify runs systemd-analyze verify on both units, when it is
// installed, with ExecStart pointing at a stand-in binary (verify checks
// that it exists). Any message about the units fails: verify exits 0 on
// unknown keys and bad values, printing a warning.
func TestUnitsVerify(t *testing.T) {
	t.Parallel()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	verify := func(t *testing.T, replace map[string]string) string {
		dir := t.TempDir()
		stub := writeFile(t, filepath.Join(dir, "bin", "stub"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
		var paths []string
		for _, name := range []string{"ledger", "gatekeeper"} {
			text := string(readFile(t, filepath.Join(systemdDir, name+".service")))
			text = strings.Replace(text, "ExecStart=/usr/local/bin/"+name, "ExecStart="+stub, 1)
			for from, to := range replace {
				text = strings.ReplaceAll(text, from, to)
			}
			paths = append(paths, writeFile(t, filepath.Join(dir, name+".service"), []byte(text), 0o644))
		}
		args := append([]string{"verify", "--man=no", "--recursive-errors=no"}, paths...)
		out, err := exec.Command(sa, args...).CombinedOutput()
		if strings.Contains(string(out), "recursive-errors") { // older systemd
			args = append([]string{"verify", "--man=no"}, paths...)
			out, err = exec.Command(sa, args...).CombinedOutput()
		}
		var ours []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, dir) || strings.Contains(line, "ledger.service") || strings.Contains(line, "gatekeeper.service") {
				ours = append(ours, line)
			} else if line != "" {
				t.Logf("systemd-analyze (not about these units): %s", line)
			}
		}
		if err != nil && len(ours) == 0 {
			ours = append(ours, fmt.Sprintf("exit: %v", err))
		}
		return strings.Join(ours, "\n")
	}
	if msg := verify(t, nil); msg != "" {
		t.Fatalf("systemd-analyze verify:\n%s", msg)
	}
	// And it does report mistakes on this system.
	if msg := verify(t, map[string]string{"ProtectKernelLogs=yes": "ProtectKernelLog=yes"}); !strings.Contains(msg, "ProtectKernelLog") {
		t.Fatalf("a misspelt key went unreported: %q", msg)
	}
}

var helpVar = regexp.MustCompile(`\(\$([A-Z][A-Z0-9_]*)\)`)
var exampleVar = regexp.MustCompile(`(?m)^#?([A-Z][A-Z0-9_]*)=`)

// TestEnvExamples: each template lists every variable its binary's --help
// names, and no other; it parses as a systemd environment file; its active
// lines agree with the unit.
func TestEnvExamples(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	for _, c := range []struct {
		name string
		argv []string
	}{
		{"ledger", []string{filepath.Join(bin, "ledger"), "serve", "--help"}},
		{"gatekeeper", []string{filepath.Join(bin, "gatekeeper"), "--help"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			help, err := exec.Command(c.argv[0], c.argv[1:]...).Output()
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(c.argv, " "), err)
			}
			known := map[string]bool{}
			for _, m := range helpVar.FindAllStringSubmatch(string(help), -1) {
				known[m[1]] = true
			}
			if len(known) < 10 {
				t.Fatalf("found only %d variables in --help:\n%s", len(known), help)
			}
			text := string(readFile(t, filepath.Join(systemdDir, c.name+".env.example")))
			listed := map[string]bool{}
			for _, m := range exampleVar.FindAllStringSubmatch(text, -1) {
				listed[m[1]] = true
				if !known[m[1]] {
					t.Errorf("%s.env.example lists %s, which %s does not know", c.name, m[1], c.name)
				}
			}
			for v := range known {
				if !listed[v] {
					t.Errorf("%s.env.example does not list %s", c.name, v)
				}
			}
			// Active lines: valid assignments, no inline comments (systemd
			// would keep them in the value), and DATA_DIR as in the unit.
			for _, kv := range envAssignments(t, text) {
				if strings.Contains(kv[1], "#") {
					t.Errorf("%s=%s: systemd keeps a trailing comment in the value", kv[0], kv[1])
				}
				if kv[0] == "DATA_DIR" && kv[1] != unitDataDir {
					t.Errorf("DATA_DIR=%s, want the unit's %s", kv[1], unitDataDir)
				}
				if kv[0] == "LICENSE_FILE" || kv[0] == "LICENSE_KEY" {
					t.Errorf("%s is active in the template: setup.sh owns it", kv[0])
				}
			}
		})
	}
}

// TestInstallConfExample: the example's paths are the units' (setup.sh run
// with it in TestSetupInstallsLicense lands where the units look).
func TestInstallConfExample(t *testing.T) {
	t.Parallel()
	text := string(readFile(t, filepath.Join(deployDir, "install.conf.example")))
	for _, want := range []string{"data_dir: " + unitDataDir + "\n", "env_file: " + unitEnvFile + "\n", "license:\n", "  file: "} {
		if !strings.Contains(text, want) {
			t.Errorf("install.conf.example has no %q", want)
		}
	}
}
