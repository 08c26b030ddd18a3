package manifesttest

import (
	"path/filepath"
	"strings"
	"testing"
)

// docFiles are the Markdown files a reader follows links between: the
// README, docs/ and the READMEs of deploy/.
func docFiles(t testing.TB) []string {
	t.Helper()
	root := repoRoot(t)
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "deploy/*/README.md"} {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			rel, err := filepath.Rel(root, m)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, filepath.ToSlash(rel))
		}
	}
	if len(files) < 10 {
		t.Fatalf("found only %v", files)
	}
	return files
}

// Every relative link between the documents resolves, anchors included.
func TestDocLinks(t *testing.T) {
	root := repoRoot(t)
	for _, f := range docFiles(t) {
		for _, s := range checkLinks(root, f, string(readRepoFile(t, f))) {
			t.Error(s)
		}
	}
}

func TestDocLinksChecksCanFail(t *testing.T) {
	root := repoRoot(t)
	readme := string(readRepoFile(t, "README.md"))
	cases := []struct{ old, new, want string }{
		{"(docs/http-api.md#enforcement-expiry-and-install-time-licenses)", "(docs/http-api.md#enforcement)", "no heading #enforcement in docs/http-api.md"},
		{"(docs/licenses.md)", "(docs/license.md)", "docs/license.md does not exist"},
		{"(#reference)", "(#references)", "no heading #references in README.md"},
	}
	if got := checkLinks(root, "README.md", readme); len(got) != 0 {
		t.Fatalf("the README itself fails: %v", got)
	}
	for _, c := range cases {
		if !strings.Contains(readme, c.old) {
			t.Errorf("README.md no longer contains %q: update this case", c.old)
			continue
		}
		got := strings.Join(checkLinks(root, "README.md", strings.Replace(readme, c.old, c.new, 1)), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}
}
