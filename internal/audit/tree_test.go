package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

// The tree is checked against RFC 6962 §2.1 as written, here, without the
// library the trail uses: MTH, PATH and PROOF over the leaves themselves.

func rfcLeaf(d []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, d...))
	return h[:]
}

func rfcNode(l, r []byte) []byte {
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

// rfcSplit is the largest power of two smaller than n (n > 1).
func rfcSplit(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// rfcMTH is MTH(D[n]).
func rfcMTH(d [][]byte) []byte {
	switch len(d) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return rfcLeaf(d[0])
	}
	k := rfcSplit(len(d))
	return rfcNode(rfcMTH(d[:k]), rfcMTH(d[k:]))
}

// rfcPath is PATH(m, D[n]).
func rfcPath(m int, d [][]byte) [][]byte {
	if len(d) <= 1 {
		return nil
	}
	k := rfcSplit(len(d))
	if m < k {
		return append(rfcPath(m, d[:k]), rfcMTH(d[k:]))
	}
	return append(rfcPath(m-k, d[k:]), rfcMTH(d[:k]))
}

// rfcSubproof is SUBPROOF(m, D[n], b).
func rfcSubproof(m int, d [][]byte, b bool) [][]byte {
	n := len(d)
	if m == n {
		if b {
			return nil
		}
		return [][]byte{rfcMTH(d)}
	}
	k := rfcSplit(n)
	if m <= k {
		return append(rfcSubproof(m, d[:k], b), rfcMTH(d[k:]))
	}
	return append(rfcSubproof(m-k, d[k:], false), rfcMTH(d[:k]))
}

// rows is a TreeRows over tree_hashes held in a slice (index seq-1).
type rows [][]byte

func (r rows) TreeRows(_ context.Context, seqs []uint64) (map[uint64][]byte, error) {
	out := map[uint64][]byte{}
	for _, s := range seqs {
		if s >= 1 && s <= uint64(len(r)) {
			out[s] = r[s-1]
		}
	}
	return out, nil
}

func leaves(n int) [][]byte {
	d := make([][]byte, n)
	for i := range d {
		d[i] = fmt.Appendf(nil, `{"id":"record-%d","n":%d}`, i+1, i*i)
	}
	return d
}

func grow(d [][]byte) (*audit.Tree, rows) {
	t := audit.NewTree()
	var r rows
	for _, l := range d {
		r = append(r, t.Append(l))
	}
	return t, r
}

func equalHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestTreeMatchesRFC6962(t *testing.T) {
	ctx := context.Background()
	const n = 1100
	d := leaves(n)
	tree := audit.NewTree()
	var r rows
	if root := tree.Root(); !bytes.Equal(root[:], rfcMTH(nil)) {
		t.Fatalf("empty root %x", root)
	}
	for i, l := range d {
		row := tree.Append(l)
		seq := uint64(i + 1)
		if len(row) != audit.TreeHashesLen(seq) {
			t.Fatalf("record %d: %d bytes of tree hashes, want %d", seq, len(row), audit.TreeHashesLen(seq))
		}
		// The record completes the perfect subtrees that end with it.
		for level := 0; level*32 < len(row); level++ {
			want := rfcMTH(d[i+1-1<<level : i+1])
			if !bytes.Equal(row[level*32:level*32+32], want) {
				t.Fatalf("record %d, level %d: %x, want %x", seq, level, row[level*32:level*32+32], want)
			}
		}
		r = append(r, row)
		if root := tree.Root(); !bytes.Equal(root[:], rfcMTH(d[:i+1])) {
			t.Fatalf("root at %d: %x", i+1, root)
		}
	}

	check := func(size uint64) {
		t.Helper()
		root, err := audit.RootAt(ctx, r, size)
		if err != nil || !bytes.Equal(root[:], rfcMTH(d[:size])) {
			t.Fatalf("RootAt(%d): %x, %v", size, root, err)
		}
		for _, seq := range []uint64{1, size, 1 + rand.Uint64N(size), 1 + rand.Uint64N(size)} {
			p, err := audit.InclusionProof(ctx, r, seq, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", seq, size, err)
			}
			if want := rfcPath(int(seq-1), d[:size]); !equalHashes(p, want) {
				t.Fatalf("InclusionProof(%d, %d): %d hashes, not RFC 6962's PATH (%d)", seq, size, len(p), len(want))
			}
			if err := audit.VerifyInclusion(d[seq-1], seq, size, p, root); err != nil {
				t.Fatalf("VerifyInclusion(%d, %d): %v", seq, size, err)
			}
		}
		from := 1 + rand.Uint64N(size)
		p, err := audit.ConsistencyProof(ctx, r, from, size)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", from, size, err)
		}
		if want := rfcSubproof(int(from), d[:size], true); from < size && !equalHashes(p, want) {
			t.Fatalf("ConsistencyProof(%d, %d): not RFC 6962's PROOF", from, size)
		}
		fromRoot, _ := audit.RootAt(ctx, r, from)
		if err := audit.VerifyConsistency(from, size, p, fromRoot, root); err != nil {
			t.Fatalf("VerifyConsistency(%d, %d): %v", from, size, err)
		}
	}
	for size := uint64(1); size <= 70; size++ {
		check(size)
	}
	for range 200 {
		check(1 + rand.Uint64N(n))
	}
	check(n)

	// Resumed from stored hashes, the tree goes on as it would have.
	for _, size := range []uint64{0, 1, 63, 64, 65, 1000} {
		resumed, err := audit.LoadTree(ctx, r[:size], size)
		if err != nil {
			t.Fatal(err)
		}
		for i := size; i < n; i++ {
			if row := resumed.Append(d[i]); !bytes.Equal(row, r[i]) {
				t.Fatalf("resumed at %d: record %d's tree hashes differ", size, i+1)
			}
		}
		if resumed.Root() != tree.Root() {
			t.Fatalf("resumed at %d: another root", size)
		}
	}
}

func TestTreeProofsRefuseWhatTheyCannotProve(t *testing.T) {
	ctx := context.Background()
	d := leaves(40)
	_, r := grow(d)
	if _, err := audit.InclusionProof(ctx, r, 0, 10); !errors.Is(err, audit.ErrTreeSize) {
		t.Errorf("inclusion of seq 0: %v", err)
	}
	if _, err := audit.InclusionProof(ctx, r, 11, 10); !errors.Is(err, audit.ErrTreeSize) {
		t.Errorf("inclusion beyond the size: %v", err)
	}
	if _, err := audit.InclusionProof(ctx, r, 3, 41); !errors.Is(err, audit.ErrTreeSize) {
		t.Errorf("a size beyond the trail: %v", err)
	}
	if _, err := audit.ConsistencyProof(ctx, r, 11, 10); !errors.Is(err, audit.ErrTreeSize) {
		t.Errorf("consistency backwards: %v", err)
	}
	if p, err := audit.ConsistencyProof(ctx, r, 0, 10); err != nil || len(p) != 0 {
		t.Errorf("consistency from the empty tree: %d hashes, %v", len(p), err)
	}

	// A changed record, a changed stored hash, or a trail grown differently
	// after a point fail verification against what was published before.
	root40, _ := audit.RootAt(ctx, r, 40)
	root20, _ := audit.RootAt(ctx, r, 20)
	p, _ := audit.InclusionProof(ctx, r, 7, 40)
	if err := audit.VerifyInclusion([]byte("another record"), 7, 40, p, root40); err == nil {
		t.Error("inclusion of changed bytes verified")
	}
	bad := append(rows(nil), r...)
	bad[5] = bytes.Clone(bad[5])
	bad[5][0] ^= 1 // record 6's leaf hash
	if p, _ := audit.InclusionProof(ctx, bad, 5, 40); audit.VerifyInclusion(d[4], 5, 40, p, root40) == nil {
		t.Error("a proof read from a tampered stored hash verified")
	}
	forked := append(append([][]byte(nil), d[:15]...), leaves(25)...)
	_, fr := grow(forked)
	froot, _ := audit.RootAt(ctx, fr, 40)
	cp, _ := audit.ConsistencyProof(ctx, fr, 20, 40)
	if err := audit.VerifyConsistency(20, 40, cp, root20, froot); err == nil {
		t.Error("a trail rewritten after record 15 is consistent with the published size 20")
	}
}

// The in-memory trail keeps every record's tree_hashes across its blocks,
// and proves from them what the records themselves prove.
func TestMemoryTree(t *testing.T) {
	ctx := context.Background()
	const n = 2*1024 + 77
	d := leaves(n)
	msgs := make([]*events.Message, n)
	for i := range msgs {
		msgs[i] = events.Decode(events.AuditSubject("acme"), uint64(i+1), d[i])
	}
	mem := memoryOf(t, msgs)
	_, want := grow(d)
	got, err := mem.TreeRows(ctx, []uint64{1, 2, 1024, 1025, 2048, n, n + 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 1024, 1025, 2048, n} {
		if !bytes.Equal(got[seq], want[seq-1]) {
			t.Fatalf("record %d: tree hashes differ", seq)
		}
	}
	if _, ok := got[n+1]; ok {
		t.Fatal("a record beyond the trail")
	}
	size, root, err := mem.TreeSize(ctx)
	if err != nil || size != n || !bytes.Equal(root[:], rfcMTH(d)) {
		t.Fatalf("TreeSize: %d %x %v", size, root, err)
	}
	for range 50 {
		size := 1 + rand.Uint64N(n)
		seq := 1 + rand.Uint64N(size)
		p, err := audit.InclusionProof(ctx, mem, seq, size)
		if err != nil || !equalHashes(p, rfcPath(int(seq-1), d[:size])) {
			t.Fatalf("InclusionProof(%d, %d): %v", seq, size, err)
		}
	}
	res := verify(t, mem, audit.VerifyOptions{})
	if !res.OK || res.Rows != n {
		t.Fatalf("verify: %+v", res)
	}

	// A trail whose sequences do not start at 1 has no tree, and says so.
	gap := audit.NewMemory(audit.Messages(msgs[1:]))
	if err := gap.Append(msgs[1], time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := gap.TreeSize(ctx); err == nil || !strings.Contains(err.Error(), "no Merkle tree") {
		t.Fatalf("a trail from seq 2: %v", err)
	}
	if _, err := gap.TreeRows(ctx, []uint64{1}); err == nil {
		t.Fatal("a trail from seq 2 gave tree hashes")
	}
}
