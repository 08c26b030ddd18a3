package manifesttest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's package map names every package of the module, and nothing
// that is gone: a newcomer reads it to find their way, so it must not lie.

// packageDirs are the directories under root, relative and slash-separated,
// that hold a Go package of the module: any .go file, test files included
// (what `go list ./...` lists). Like the go command it skips testdata,
// directories whose name begins with . or _, and directories holding a
// go.mod of their own (another module, such as examples).
func packageDirs(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == root {
				return nil
			}
			name := d.Name()
			if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".go") {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			seen[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pkgs := make([]string, 0, len(seen))
	for p := range seen {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	return pkgs, nil
}

var mapRowRe = regexp.MustCompile("^\\| `([^`]+)` \\|")

// packageMapRows are the paths of the first table under the README's
// "## Package map" heading, without their trailing slash.
func packageMapRows(readme string) ([]string, error) {
	_, section, ok := strings.Cut(readme, "\n## Package map\n")
	if !ok {
		return nil, fmt.Errorf(`the README has no "## Package map" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []string
	inTable := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		if m := mapRowRe.FindStringSubmatch(line); m != nil {
			rows = append(rows, strings.TrimSuffix(m[1], "/"))
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("the README's package map has no rows")
	}
	return rows, nil
}

// checkPackageMap compares the map's rows with the module's packages: each
// package needs a row, and each row must name a directory that exists
// (isDir). A row may name a directory that holds no package of the module
// (another module, a directory of configuration files).
func checkPackageMap(rows, pkgs []string, isDir func(string) bool) []string {
	var p []string
	listed := map[string]bool{}
	for _, r := range rows {
		if listed[r] {
			p = append(p, fmt.Sprintf("the README's package map lists %s/ twice", r))
		}
		listed[r] = true
		if !isDir(r) {
			p = append(p, fmt.Sprintf("the README's package map lists %s/, which does not exist", r))
		}
	}
	for _, pkg := range pkgs {
		if !listed[pkg] {
			p = append(p, fmt.Sprintf("package %s/ is missing from the README's package map", pkg))
		}
	}
	return p
}

func repoIsDir(root string) func(string) bool {
	return func(rel string) bool {
		st, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel)))
		return err == nil && st.IsDir()
	}
}

func TestReadmePackageMap(t *testing.T) {
	root := repoRoot(t)
	pkgs, err := packageDirs(root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pkgs, "license") || !slices.Contains(pkgs, "internal/testenv/proctest") || !slices.Contains(pkgs, "deploy/deploytest") {
		t.Fatalf("the package walk is broken: %v", pkgs)
	}
	rows, err := packageMapRows(string(readRepoFile(t, "README.md")))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range checkPackageMap(rows, pkgs, repoIsDir(root)) {
		t.Error(s)
	}
}

func TestReadmePackageMapChecksCanFail(t *testing.T) {
	root := repoRoot(t)
	readme := string(readRepoFile(t, "README.md"))
	pkgs, err := packageDirs(root)
	if err != nil {
		t.Fatal(err)
	}
	run := func(doc string) string {
		rows, err := packageMapRows(doc)
		if err != nil {
			return err.Error()
		}
		return strings.Join(checkPackageMap(rows, pkgs, repoIsDir(root)), "\n")
	}
	cases := []struct{ old, new, want string }{
		{"| `internal/tick/` | periodic loops |\n", "", "package internal/tick/ is missing"},
		{"| `internal/tick/` |", "| `internal/ticker/` |", "lists internal/ticker/, which does not exist"},
		{"| `internal/tick/` | periodic loops |\n", "| `internal/tick/` | periodic loops |\n| `internal/tick/` | again |\n", "lists internal/tick/ twice"},
		{"\n## Package map\n", "\n## Packages\n", `no "## Package map" section`},
	}
	for _, c := range cases {
		if !strings.Contains(readme, c.old) {
			t.Errorf("README.md no longer contains %q: update this case", c.old)
			continue
		}
		if got := run(strings.Replace(readme, c.old, c.new, 1)); !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}

	// The walk: a directory with only test files is a package; testdata, a
	// dot directory and a nested module are not.
	tree := t.TempDir()
	for f, body := range map[string]string{
		"go.mod":                      "module example.test\n",
		"a/a.go":                      "package a\n",
		"a/b/b_test.go":               "package b\n",
		"a/testdata/x.go":             "package x\n",
		".hidden/h.go":                "package h\n",
		"examples/go.mod":             "module example.test/examples\n",
		"examples/main.go":            "package main\n",
		"examples/sub/sub.go":         "package sub\n",
		"deploy/proxies/nginx.conf":   "",
		"docs/notes.md":               "",
		"internal/only/doc_readme.md": "",
	} {
		p := filepath.Join(tree, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := packageDirs(tree)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a/b"}; !slices.Equal(got, want) {
		t.Errorf("packages of the test tree: %v, want %v", got, want)
	}
}
