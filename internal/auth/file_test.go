package auth

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func hashHex(token string) string {
	h := Hash(token)
	return hex.EncodeToString(h[:])
}

var (
	tokA = strings.Repeat("a", 40)
	tokB = strings.Repeat("b", 40)
	tokC = strings.Repeat("c", 64)
)

func TestParseTokensGoodFile(t *testing.T) {
	data := "# tokens of the acme install\n" +
		"\n" +
		hashHex(tokA) + " operator * deploy-bot\n" +
		"   \t  \n" +
		strings.ToUpper(hashHex(tokB)) + "\torg_admin\tacme,globex\tjane@acme.example   # trailing comment\r\n" +
		hashHex(tokC) + " auditor _instance,acme compliance.2026_Q1" // no final newline
	entries, err := ParseTokens("tokens", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Hash: Hash(tokA), Role: RoleOperator, Orgs: []string{"*"}, Name: "deploy-bot"},
		{Hash: Hash(tokB), Role: RoleOrgAdmin, Orgs: []string{"acme", "globex"}, Name: "jane@acme.example"},
		{Hash: Hash(tokC), Role: RoleAuditor, Orgs: []string{"_instance", "acme"}, Name: "compliance.2026_Q1"},
	}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(entries), len(want), entries)
	}
	for i := range want {
		g, w := entries[i], want[i]
		if g.Hash != w.Hash || g.Role != w.Role || !slices.Equal(g.Orgs, w.Orgs) || g.Name != w.Name {
			t.Errorf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
	// Each entry authenticates as a principal named after the file's name field.
	set := Union(mustAdmin(t, tokC+"-admin"), NewSet(entries))
	for _, c := range []struct {
		tok, kind, id string
		covers        map[string]bool
	}{
		{tokA, "operator", "deploy-bot", map[string]bool{"acme": true, "_instance": true}},
		{tokB, "org_admin", "jane@acme.example", map[string]bool{"acme": true, "globex": true, "initech": false, "_instance": false}},
		{tokC, "auditor", "compliance.2026_Q1", map[string]bool{"acme": true, "_instance": true, "globex": false}},
		{tokC + "-admin", "operator", "token:" + hashHex(tokC + "-admin")[:12], map[string]bool{"acme": true, "_instance": true}},
	} {
		p, ok := set.Authenticate(c.tok)
		if !ok {
			t.Fatalf("%s does not authenticate", c.id)
		}
		if a := p.Actor(); a.Kind != c.kind || a.ID != c.id {
			t.Errorf("actor of %s: %+v", c.id, a)
		}
		for org, want := range c.covers {
			if p.CoversOrg(org) != want {
				t.Errorf("%s covers %s: %v, want %v", c.id, org, !want, want)
			}
		}
	}
	if _, ok := set.Authenticate(strings.Repeat("d", 40)); ok {
		t.Error("an unknown token authenticated")
	}
	if _, ok := set.Authenticate(tokA[:31]); ok {
		t.Error("a token shorter than 32 characters authenticated")
	}
}

func mustAdmin(t *testing.T, toks ...string) *Set {
	t.Helper()
	s, err := AdminSet(toks...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseTokensBadLines(t *testing.T) {
	h := hashHex(tokA)
	good := hashHex(tokB) + " operator * first\n"
	cases := []struct{ name, line, msg string }{
		{"three fields", h + " operator *", "got 3 field(s)"},
		{"five fields", h + " operator * a b", "got 5 field(s)"},
		{"name with a space", h + " auditor * jane doe", "got 5 field(s)"},
		{"one field", "operator", "got 1 field(s)"},
		{"short hash", h[:63] + " operator * x", "hash is 63 characters"},
		{"long hash", h + "0 operator * x", "hash is 65 characters"},
		{"hash not hex", "z" + h[1:] + " operator * x", "not hex"},
		{"unknown role", h + " admin * x", `role "admin"`},
		{"role case", h + " Operator * x", `role "Operator"`},
		{"operator with orgs", h + " operator acme x", `orgs field is "*"`},
		{"org_admin of every org", h + " org_admin * x", `"*" is for operators, auditors and reporters`},
		{"org_admin of _instance", h + " org_admin acme,_instance x", "never covers _instance"},
		{"org_admin bad slug", h + " org_admin Acme x", `org "Acme"`},
		{"empty org in list", h + " org_admin acme,,globex x", `org ""`},
		{"trailing comma", h + " org_admin acme, x", `org ""`},
		{"org listed twice", h + " org_admin acme,acme x", "listed twice"},
		{"star in a list", h + " auditor acme,* x", `"*" stands alone`},
		{"auditor bad slug", h + " auditor -acme x", `org "-acme"`},
		{"name too long", h + " operator * " + strings.Repeat("n", 65), "name"},
		{"name bad character", h + " operator * jane/doe", "name"},
		{"name not ASCII", h + " operator * jané", "name"},
		{"duplicate name", h + " auditor * first", `name "first" is also on line 1: none of these lines is trusted`},
		{"duplicate hash", hashHex(tokB) + " auditor * second", "the same token is also on line 1: none of these lines is trusted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := []byte(good + "# comment\n" + c.line + "\n" + hashHex(tokC) + " auditor * last\n")
			p := ParseLines("/etc/ledger/tokens", data)
			dup := strings.HasPrefix(c.name, "duplicate")
			var le *LineError
			for _, b := range p.Broken {
				if b.Line == 3 {
					le = b
				}
			}
			if le == nil {
				t.Fatalf("line 3 is not broken: %+v", p.Broken)
			}
			if !strings.HasPrefix(le.Error(), "/etc/ledger/tokens:3: ") || !strings.Contains(le.Error(), c.msg) {
				t.Fatalf("error %q: want /etc/ledger/tokens:3: …%s…", le, c.msg)
			}
			if strings.Contains(le.Error(), h) || strings.Contains(strings.ToLower(le.Error()), h[:12]) {
				t.Fatalf("error %q holds the hash", le)
			}
			// The valid lines stay: line 1 unless it is the other half of a
			// duplicate, and line 4.
			want, kind := []string{"first", "last"}, ProblemMalformed
			if dup {
				want, kind = []string{"last"}, ProblemDuplicate
				if len(p.Broken) != 2 || p.Broken[0].Line != 1 || p.Broken[0].Kind != ProblemDuplicate || !strings.Contains(p.Broken[0].Error(), "also on line 3") {
					t.Fatalf("the first line of a duplicate: %v", p.Broken)
				}
			}
			if le.Kind != kind {
				t.Errorf("kind %q, want %q", le.Kind, kind)
			}
			var names []string
			for _, e := range p.Entries {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, want) {
				t.Fatalf("entries %v, want %v", names, want)
			}
			// All or nothing: ParseTokens fails on the first broken line.
			if _, err := ParseTokens("/etc/ledger/tokens", data); err == nil || err.Error() != p.Broken[0].Error() {
				t.Fatalf("ParseTokens: %v", err)
			}
		})
	}
	// A name of 64 characters, every allowed character, is fine.
	if _, err := ParseTokens("f", []byte(h+" operator * "+strings.Repeat("aZ09_.@-", 8)+"\n")); err != nil {
		t.Fatal(err)
	}
}

func TestReadTokensFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	if _, err := ReadTokensFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	line := []byte(hashHex(tokA) + " operator * ops\n")
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o660} {
		os.WriteFile(path, line, 0o600)
		os.Chmod(path, mode)
		_, err := ReadTokensFile(path)
		if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(path, mode)
		if e, err := ReadTokensFile(path); err != nil || len(e) != 1 {
			t.Errorf("mode %04o: %v %v", mode, e, err)
		}
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, append(line, "oops\n"...), 0o600)
	if _, err := ReadTokensFile(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("malformed: %v", err)
	}
	if _, err := ReadTokensFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	// ReadLines keeps the valid lines and reports the broken ones.
	if p, err := ReadLines(path); err != nil || len(p.Entries) != 1 || len(p.Broken) != 1 || p.Broken[0].Line != 2 {
		t.Errorf("ReadLines: %+v %v", p, err)
	}
}

// A file of another user is refused even with mode 0600: its owner may
// rewrite it, or open it up.
func TestReadTokensFileOwner(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(hashHex(tokA)+" operator * ops\n"), 0o600)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := ReadLines(path)
	if !errors.Is(err, ErrInsecureFile) || ProblemOf(err) != ProblemInsecure || !strings.Contains(err.Error(), "belongs to uid 65534, not to uid 0") {
		t.Fatalf("a file of uid 65534: %v", err)
	}
	e, _ := NewEntry(tokB, RoleAuditor, []string{"*"}, "aud")
	if err := AddToken(path, e); !errors.Is(err, ErrInsecureFile) {
		t.Fatalf("add to a file of another user: %v", err)
	}
	os.Chown(path, 0, 0)
	if p, err := ReadLines(path); err != nil || len(p.Entries) != 1 {
		t.Fatalf("owned again: %+v %v", p, err)
	}
}

func TestAddRemoveKeepLinesAndMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by AddToken
	path := filepath.Join(dir, "tokens")
	ea, _ := NewEntry(tokA, RoleOperator, []string{"*"}, "ops")
	eb, _ := NewEntry(tokB, RoleOrgAdmin, []string{"acme"}, "acme-admin")
	ec, _ := NewEntry(tokC, RoleAuditor, []string{"*"}, "audit")
	if err := AddToken(path, ea); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if fi, _ := os.Stat(dir); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %04o", fi.Mode().Perm())
	}
	// Hand-written comments and a missing final newline survive edits.
	b, _ := os.ReadFile(path)
	hand := "# managed by hand too\n" + string(b) + "\n# keep me"
	if err := WriteFileAtomic(path, []byte(hand)); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if err := AddToken(path, eb); err != nil {
		t.Fatal(err)
	}
	if err := AddToken(path, ec); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	want := hand + "\n" + eb.Line() + "\n" + ec.Line() + "\n"
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Fatalf("after adds:\n%s\nwant:\n%s", b, want)
	}
	dup, _ := NewEntry(strings.Repeat("e", 40), RoleAuditor, []string{"*"}, "ops")
	if err := AddToken(path, dup); !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("duplicate name: %v", err)
	}
	same, _ := NewEntry(tokA, RoleAuditor, []string{"*"}, "other")
	if err := AddToken(path, same); err == nil || !strings.Contains(err.Error(), "already in the file as ops") {
		t.Fatalf("same token twice: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Fatalf("a refused add changed the file:\n%s", b)
	}

	got, err := RemoveToken(path, "acme-admin")
	if err != nil || got.Name != "acme-admin" || got.Hash != eb.Hash {
		t.Fatalf("remove: %+v %v", got, err)
	}
	checkMode(t, path)
	want = hand + "\n" + ec.Line() + "\n"
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Fatalf("after remove:\n%s\nwant:\n%s", b, want)
	}
	if _, err := RemoveToken(path, "acme-admin"); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("remove twice: %v", err)
	}
	if _, err := RemoveToken(filepath.Join(dir, "none"), "x"); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("remove from a missing file: %v", err)
	}
	// No temporary file is left behind.
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if n.Name() != "tokens" && n.Name() != "tokens.lock" {
			t.Errorf("stray file %s", n.Name())
		}
	}

	// A broken line stops an add, never a revocation, which keeps it as
	// it is; lines naming the revoked token twice all go.
	bad := append([]byte(want), "garbage\n"...)
	os.WriteFile(path, bad, 0o600)
	if err := AddToken(path, eb); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Fatalf("add to a malformed file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(bad) {
		t.Fatal("a malformed file was rewritten by an add")
	}
	twice, _ := NewEntry(tokA, RoleOperator, []string{"*"}, "audit")
	os.WriteFile(path, append(bad, twice.Line()+"\n"...), 0o600)
	if got, err := RemoveToken(path, "audit"); err != nil || got.Hash != ec.Hash {
		t.Fatalf("remove from a malformed file: %+v %v", got, err)
	}
	if b, _ := os.ReadFile(path); string(b) != hand+"\ngarbage\n" {
		t.Fatalf("after removing a token named twice:\n%s", b)
	}
	if runtime.GOOS != "windows" {
		os.WriteFile(path, []byte(want), 0o600)
		os.Chmod(path, 0o644)
		if err := AddToken(path, eb); !errors.Is(err, ErrInsecureFile) {
			t.Fatalf("add to a 0644 file: %v", err)
		}
	}
}

// WriteFileAtomic creates 0600 files whatever the umask and the mode of
// the file it replaces.
func TestWriteFileAtomicMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte("old"), 0o644)
	if err := WriteFileAtomic(path, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Fatalf("content %q", b)
	}
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %04o, want 0600", path, fi.Mode().Perm())
	}
}

func TestNewEntry(t *testing.T) {
	if _, err := NewEntry(tokA[:31], RoleOperator, []string{"*"}, "x"); err == nil {
		t.Error("a 31-character token was accepted")
	}
	e, err := NewEntry(tokA, RoleOrgAdmin, []string{"acme", "globex"}, "x")
	if err != nil {
		t.Fatal(err)
	}
	if e.Line() != hashHex(tokA)+" org_admin acme,globex x" || e.HashPrefix() != hashHex(tokA)[:12] {
		t.Errorf("line %q prefix %q", e.Line(), e.HashPrefix())
	}
	back, err := ParseTokens("f", []byte(e.Line()))
	if err != nil || len(back) != 1 || back[0].Hash != e.Hash || !slices.Equal(back[0].Orgs, e.Orgs) {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

// Two editors at once never lose each other's token.
func TestConcurrentAdds(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			e, _ := NewEntry(Generate(), RoleAuditor, []string{"*"}, "t"+strings.Repeat("x", i))
			errs <- AddToken(path, e)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	entries, err := ReadTokensFile(path)
	if err != nil || len(entries) != n {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
}

// Many lines with one name are all broken, each naming a few of the others.
func TestParseLinesManyDuplicates(t *testing.T) {
	var b strings.Builder
	for i := range 5 {
		e, _ := NewEntry(strings.Repeat(string(rune('a'+i)), 40), RoleAuditor, []string{"*"}, "same")
		b.WriteString(e.Line() + "\n")
	}
	p := ParseLines("tokens", []byte(b.String()))
	if len(p.Entries) != 0 || len(p.Broken) != 5 {
		t.Fatalf("%d entries, %d broken", len(p.Entries), len(p.Broken))
	}
	if got := p.Broken[0].Error(); got != `tokens:1: name "same" is also on line 2, 3, 4, 1 more: none of these lines is trusted` {
		t.Fatalf("line 1: %s", got)
	}
	if got := p.Broken[4].Error(); got != `tokens:5: name "same" is also on line 1, 2, 3, 1 more: none of these lines is trusted` {
		t.Fatalf("line 5: %s", got)
	}
}
