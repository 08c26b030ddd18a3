package natsauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestLoadOrCreateSeedsCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nats")
	s, err := LoadOrCreateSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ledger.Role != RoleLedger || s.Reader.Role != RoleReader || s.Admin.Role != RoleAdmin {
		t.Fatalf("roles = %s, %s, %s", s.Ledger.Role, s.Reader.Role, s.Admin.Role)
	}
	if s.Ledger.PublicKey == s.Reader.PublicKey || s.Admin.PublicKey == s.Ledger.PublicKey || s.Admin.PublicKey == s.Reader.PublicKey {
		t.Fatal("two identities share a key")
	}
	assertMode(t, dir, 0o700)
	for _, id := range []Identity{s.Ledger, s.Reader, s.Admin} {
		path := SeedPath(dir, id.Role)
		assertMode(t, path, 0o600)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != string(id.Seed)+"\n" {
			t.Errorf("%s holds %q", path, raw)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("%s mode = %04o, want %04o", path, got, want)
	}
}

func TestLoadOrCreateSeedsReloads(t *testing.T) {
	dir := t.TempDir()
	s1, err := LoadOrCreateSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := LoadOrCreateSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Ledger.PublicKey != s2.Ledger.PublicKey || s1.Reader.PublicKey != s2.Reader.PublicKey || s1.Admin.PublicKey != s2.Admin.PublicKey {
		t.Fatal("second call generated new keys")
	}
}

// A directory written before the admin identity existed (ledger.nk and
// reader.nk only) keeps its two keys and gains admin.nk.
func TestLoadOrCreateSeedsAddsAdminToAnOlderDirectory(t *testing.T) {
	dir := t.TempDir()
	var old []Identity
	for _, role := range []Role{RoleLedger, RoleReader} {
		id, err := GenerateIdentity(role)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(SeedPath(dir, role), append(id.Seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}
	s, err := LoadOrCreateSeeds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ledger.PublicKey != old[0].PublicKey || s.Reader.PublicKey != old[1].PublicKey {
		t.Fatal("the existing ledger or reader key was replaced")
	}
	admin, err := LoadIdentity(SeedPath(dir, RoleAdmin), RoleAdmin)
	if err != nil {
		t.Fatalf("admin.nk: %v", err)
	}
	if admin.PublicKey != s.Admin.PublicKey {
		t.Fatal("admin.nk holds another key than the one returned")
	}
	assertMode(t, SeedPath(dir, RoleAdmin), 0o600)
}

func TestLoadOrCreateSeedsConcurrentStartAgrees(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := LoadOrCreateSeeds(dir)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = s.Ledger.PublicKey + s.Reader.PublicKey + s.Admin.PublicKey
		})
	}
	wg.Wait()
	for i := range keys {
		if keys[i] != keys[0] {
			t.Fatalf("caller %d got different keys", i)
		}
	}
}

func TestLoadOrCreateSeedsRefusesReadableSeed(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateSeeds(dir); err != nil {
		t.Fatal(err)
	}
	path := SeedPath(dir, RoleReader)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateSeeds(dir)
	if !errors.Is(err, ErrInsecureSeedFile) {
		t.Fatalf("err = %v, want ErrInsecureSeedFile", err)
	}
	if !strings.Contains(err.Error(), "run chmod 600 "+path) {
		t.Errorf("error does not name the file and the fix: %v", err)
	}
}

// The seeds' directory is the product's own: one wider than 0700 (made by
// hand, or by an older release) is set to 0700.
func TestLoadOrCreateSeedsTightensDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSeeds(dir); err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
}

func TestLoadIdentityFormats(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()

	cases := []struct {
		name    string
		content string
		ok      bool
	}{
		{"bare", string(seed), true},
		{"newline", string(seed) + "\n", true},
		{"crlf", string(seed) + "\r\n", true},
		{"two newlines", string(seed) + "\n\n", false},
		{"leading space", " " + string(seed), false},
		{"account seed", string(accountSeed), false},
		{"garbage", "hello", false},
		{"empty", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "reader.nk")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			id, err := LoadIdentity(path, RoleReader)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if c.ok && string(id.Seed) != string(seed) {
				t.Errorf("seed = %q", id.Seed)
			}
		})
	}
}

func TestConnectOptionSignsWithSeed(t *testing.T) {
	id, err := GenerateIdentity(RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := ConnectOption(id.Seed)
	if err != nil {
		t.Fatal(err)
	}
	opts := nats.GetDefaultOptions()
	if err := opt(&opts); err != nil {
		t.Fatal(err)
	}
	if opts.Nkey != id.PublicKey {
		t.Fatalf("nkey = %s, want %s", opts.Nkey, id.PublicKey)
	}
	nonce := []byte("server-nonce")
	sig, err := opts.SignatureCB(nonce)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := nkeys.FromPublicKey(id.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(nonce, sig); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if _, err := ConnectOption([]byte("SUAbogus")); err == nil {
		t.Error("bogus seed accepted")
	}
}
