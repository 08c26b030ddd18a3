package manifesttest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every way the module is built runs go.mod's Go: the scripts that run the
// go command select it with GOTOOLCHAIN (the machine's Go may be older and
// its go env may say local), the Dockerfile builds FROM it (TestDockerfile),
// and the README's Quickstart tells a newcomer how.

// goCommandRe matches a line of a shell script that runs the go command.
var goCommandRe = regexp.MustCompile(`(?m)^[^#\n]*(?:^|[\s;&|(]|\$\()go (?:build|run|test|vet|mod|env|install|tool|generate|list)\b`)

func checkToolchainPins(files map[string]string, readme, goVer string) []string {
	var p []string
	pin := "export GOTOOLCHAIN=go" + goVer + "\n"
	for name, body := range files {
		if goCommandRe.MatchString(body) && !strings.Contains(body, pin) {
			p = append(p, fmt.Sprintf("%s runs the go command without %q (go.mod's go line)", name, strings.TrimSpace(pin)))
		}
	}
	quick, _, _ := strings.Cut(readme[strings.Index(readme, "## Quickstart")+1:], "\n## ")
	for _, want := range []string{"You need Go " + goVer, "export GOTOOLCHAIN=go" + goVer} {
		if !strings.Contains(quick, want) {
			p = append(p, fmt.Sprintf("the README's Quickstart does not say %q", want))
		}
	}
	return p
}

// toolchainInputs are .ci/run and every file under scripts/, and the README.
func toolchainInputs(t *testing.T) (map[string]string, string) {
	root := repoRoot(t)
	names, err := filepath.Glob(filepath.Join(root, "scripts", "*"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{".ci/run": string(readRepoFile(t, ".ci/run"))}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, n)
		files[rel] = string(b)
	}
	return files, string(readRepoFile(t, "README.md"))
}

func TestToolchainPinned(t *testing.T) {
	files, readme := toolchainInputs(t)
	if !strings.Contains(files[".ci/run"], "scripts/govulncheck.sh") {
		t.Error(".ci/run does not run scripts/govulncheck.sh")
	}
	for _, s := range checkToolchainPins(files, readme, goVersion(t)) {
		t.Error(s)
	}
}

func TestToolchainChecksCanFail(t *testing.T) {
	files, readme := toolchainInputs(t)
	goVer := goVersion(t)
	pin := "export GOTOOLCHAIN=go" + goVer
	for name, body := range files {
		if !strings.Contains(body, pin) {
			continue
		}
		broken := map[string]string{name: strings.Replace(body, pin, "export GOTOOLCHAIN=go1.20.1", 1)}
		if got := strings.Join(checkToolchainPins(broken, readme, goVer), "\n"); !strings.Contains(got, name+" runs the go command without") {
			t.Errorf("%s with another GOTOOLCHAIN passes: %q", name, got)
		}
	}
	if got := checkToolchainPins(map[string]string{"x.sh": "#!/bin/sh\ncd dir && go test ./...\n"}, readme, goVer); len(got) != 1 {
		t.Errorf("a script running go test with no pin: %v", got)
	}
	if got := checkToolchainPins(map[string]string{"x.sh": "#!/bin/sh\n# go test ./... is what CI runs\necho go\n"}, readme, goVer); len(got) != 0 {
		t.Errorf("a script that only mentions go: %v", got)
	}
	old := strings.Replace(readme, pin, "export GOTOOLCHAIN=local", 1)
	if got := strings.Join(checkToolchainPins(nil, old, goVer), "\n"); !strings.Contains(got, "Quickstart does not say") {
		t.Errorf("a README without the pin passes: %q", got)
	}
}
