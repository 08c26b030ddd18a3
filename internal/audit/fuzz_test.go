package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/licenseledger/ledger/internal/audit"
)

// fuzzTrail is a trail of 300 records and its tree rows, made once.
var fuzzTrail = sync.OnceValues(func() ([][]byte, rows) {
	d := leaves(300)
	_, r := grow(d)
	return d, r
})

// Any record, any size, any earlier size: the proofs the tree gives
// verify, and never for other bytes.
func FuzzTreeProofs(f *testing.F) {
	for _, s := range [][3]uint64{{1, 1, 0}, {7, 64, 63}, {300, 300, 1}, {129, 257, 128}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, seq, size, from uint64) {
		d, r := fuzzTrail()
		ctx := context.Background()
		size = size%uint64(len(d)) + 1
		seq = seq%size + 1
		from %= size + 1
		root, err := audit.RootAt(ctx, r, size)
		if err != nil {
			t.Fatal(err)
		}
		p, err := audit.InclusionProof(ctx, r, seq, size)
		if err != nil || audit.VerifyInclusion(d[seq-1], seq, size, p, root) != nil {
			t.Fatalf("inclusion of %d in %d: %v", seq, size, err)
		}
		if audit.VerifyInclusion(append(d[seq-1], '!'), seq, size, p, root) == nil {
			t.Fatalf("inclusion of changed bytes at %d in %d verified", seq, size)
		}
		c, err := audit.ConsistencyProof(ctx, r, from, size)
		fromRoot, _ := audit.RootAt(ctx, r, from)
		if err != nil || audit.VerifyConsistency(from, size, c, fromRoot, root) != nil {
			t.Fatalf("consistency %d → %d: %v", from, size, err)
		}
	})
}

// fuzzKey is a checkpoint key made from a fixed seed: every fuzz worker
// process has the same, so the seeds' signatures hold in all of them.
var fuzzKey = sync.OnceValues(func() (*audit.CheckpointKey, error) {
	skey, _, err := note.GenerateKey(bytes.NewReader(make([]byte, 64)), audit.Origin("fuzz"))
	if err != nil {
		return nil, err
	}
	return audit.ParseCheckpointKey(skey)
})

// A proof bundle from anyone (ledger audit verify-proof reads one): any
// bytes are refused or verified, never a panic, and one that verifies
// proves its record's exact bytes in its checkpoint's tree.
func FuzzVerifyBundle(f *testing.F) {
	k, err := fuzzKey()
	if err != nil {
		f.Fatal(err)
	}
	d, r := fuzzTrail()
	ctx := context.Background()
	for _, seq := range []uint64{1, 5, 300} {
		b := bundleOf(f, k, d, r, seq, 300)
		raw, _ := json.Marshal(b)
		f.Add(raw)
	}
	f.Add([]byte(`{"record":{},"proof":{},"checkpoint":""}`))
	if *writeSeeds {
		writeSeedCorpus(f, "FuzzVerifyBundle", bundleOf(f, k, d, r, 42, 257))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b audit.Bundle
		if json.Unmarshal(raw, &b) != nil {
			return
		}
		v, err := audit.VerifyBundle(b, k.VerifierKey())
		if err != nil {
			return
		}
		rec, err := b.Record.Raw()
		if err != nil || v.Seq == 0 || v.Seq > uint64(len(d)) || string(rec) != string(d[v.Seq-1]) {
			t.Fatalf("a bundle of record %d verified with bytes %q", v.Seq, rec)
		}
		if want, _ := audit.RootAt(ctx, r, v.TreeSize); want != v.Root {
			t.Fatalf("a bundle verified against a root the key never signed: %x", v.Root)
		}
	})
}

func bundleOf(t testing.TB, k *audit.CheckpointKey, d [][]byte, r rows, seq, size uint64) audit.Bundle {
	ctx := context.Background()
	root, _ := audit.RootAt(ctx, r, size)
	msg, err := k.Sign(size, root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := audit.InclusionProof(ctx, r, seq, size)
	if err != nil {
		t.Fatal(err)
	}
	prev := audit.Zero
	for i := uint64(1); i < seq; i++ {
		prev = audit.Next(prev, i, d[i-1])
	}
	env := string(d[seq-1])
	rec := audit.RecordJSON{Seq: seq, Envelope: &env, PrevHash: prev.Hex(), Hash: audit.Next(prev, seq, d[seq-1]).Hex()}
	return audit.Bundle{Record: rec, Proof: audit.InclusionJSON{Seq: seq, LeafIndex: seq - 1, TreeSize: size, Hashes: p},
		Checkpoint: string(msg)}
}

var writeSeeds = flag.Bool("write-seeds", false, "write FuzzVerifyBundle's checked-in seed corpus")

// writeSeedCorpus writes b as a corpus file of target.
func writeSeedCorpus(t testing.TB, target string, b audit.Bundle) {
	raw, _ := json.Marshal(b)
	dir := filepath.Join("testdata", "fuzz", target)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "valid-bundle"), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(raw))+")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
