package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
)

func TestCheckpointKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "checkpoint.key")
	k, created, err := audit.LoadCheckpointKey(path, audit.Origin("install-1"))
	if err != nil || !created {
		t.Fatalf("first start: %v %v", created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	again, created, err := audit.LoadCheckpointKey(path, audit.Origin("install-1"))
	if err != nil || created || again.VerifierKey() != k.VerifierKey() {
		t.Fatalf("second start: %v %v", created, err)
	}
	if _, _, err := audit.LoadCheckpointKey(path, audit.Origin("install-2")); err == nil || !strings.Contains(err.Error(), "another install") {
		t.Fatalf("another install's key: %v", err)
	}
	msg, err := k.Sign(7, audit.Hash{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if size, root, err := audit.OpenCheckpoint(msg, k.VerifierKey()); err != nil || size != 7 || root != (audit.Hash{1, 2, 3}) {
		t.Fatalf("open: %d %x %v", size, root, err)
	}
	other, _, _ := audit.LoadCheckpointKey(filepath.Join(t.TempDir(), "k"), audit.Origin("install-1"))
	if _, _, err := audit.OpenCheckpoint(msg, other.VerifierKey()); err == nil {
		t.Fatal("a checkpoint verified with another key of the same name")
	}
	tampered := strings.Replace(string(msg), "\n7\n", "\n8\n", 1)
	if _, _, err := audit.OpenCheckpoint([]byte(tampered), k.VerifierKey()); err == nil {
		t.Fatal("a changed checkpoint verified")
	}
	os.WriteFile(path, []byte("not a key\n"), 0o600)
	if _, _, err := audit.LoadCheckpointKey(path, audit.Origin("install-1")); err == nil {
		t.Fatal("a file that holds no key was accepted")
	}
}

// The embedded default's checkpoints survive a restart, and one cut short
// by a crash is dropped without losing the others.
func TestFileCheckpoints(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit-checkpoints.jsonl")
	fc, err := audit.OpenFileCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Latest(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("latest of none: %v", err)
	}
	for _, size := range []uint64{1, 4, 4, 6} {
		if err := fc.Add(ctx, audit.Checkpoint{Size: size, Root: audit.Hash{byte(size)}, Note: []byte("note\n"), SignedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"tree_size":9,"root_h`)
	f.Close()
	fc, err = audit.OpenFileCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := fc.Latest(ctx); err != nil || cp.Size != 6 {
		t.Fatalf("latest after a crash: %+v %v", cp, err)
	}
	if err := fc.Add(ctx, audit.Checkpoint{Size: 10, Root: audit.Hash{10}, Note: []byte("n"), SignedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	fc, err = audit.OpenFileCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []uint64{1, 4, 6, 10} {
		if cp, err := fc.BySize(ctx, size); err != nil || cp.Root != (audit.Hash{byte(size)}) {
			t.Fatalf("size %d: %+v %v", size, cp, err)
		}
	}
}
