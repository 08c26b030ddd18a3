package audit

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree over the trail, as RFC 6962 defines it (SHA-256): leaf i
// (from 0) is the envelope bytes of the record with seq i+1, hashed as
// SHA-256(0x00 ‖ bytes); an interior node is SHA-256(0x01 ‖ left ‖ right).
//
// A store keeps, with each record, the hashes of the perfect subtrees that
// record completes (its tree_hashes): the leaf's own hash (level 0), then
// the parent it completes (level 1) when its index is odd, and so on: as
// many levels as the leaf index has trailing one bits, plus one. The node
// at level L and index k is therefore held by the record with seq
// (k+1)·2^L, at offset 32·L, and any proof or root is read from O(log n)
// records by their primary key, never by reading the trail.

// HashSize is the size of a tree hash.
const HashSize = 32

// ColTreeHashes is the column of the hashes a record completes.
const ColTreeHashes = "tree_hashes"

// ErrTreeSize is a tree size (or leaf) out of the range the trail holds.
var ErrTreeSize = errors.New("audit: tree size out of range")

var treeHasher = rfc6962.DefaultHasher

var rangeFactory = &compact.RangeFactory{Hash: treeHasher.HashChildren}

// LeafHash returns the RFC 6962 leaf hash of a record's envelope bytes.
func LeafHash(raw []byte) Hash { return Hash(treeHasher.HashLeaf(raw)) }

// TreeHashesLen is the length of the tree_hashes of the record with seq.
func TreeHashesLen(seq uint64) int {
	return HashSize * (1 + bits.TrailingZeros64(seq))
}

// nodeSeq returns the seq of the record holding node id, and the node's
// offset in its tree_hashes.
func nodeSeq(id compact.NodeID) (uint64, int) {
	return (id.Index + 1) << id.Level, HashSize * int(id.Level)
}

// TreeRows reads the tree_hashes of records by seq. A seq it holds no
// record for is missing from the map.
type TreeRows interface {
	TreeRows(ctx context.Context, seqs []uint64) (map[uint64][]byte, error)
}

// treeNodes returns the hashes of the nodes ids, in order.
func treeNodes(ctx context.Context, r TreeRows, ids []compact.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	seqs := make([]uint64, len(ids))
	for i, id := range ids {
		seqs[i], _ = nodeSeq(id)
	}
	rows, err := r.TreeRows(ctx, seqs)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		seq, off := nodeSeq(id)
		row, ok := rows[seq]
		if !ok {
			return nil, fmt.Errorf("audit: tree node (level %d, index %d): record %d: %w", id.Level, id.Index, seq, ErrTreeSize)
		}
		if len(row) != TreeHashesLen(seq) {
			return nil, fmt.Errorf("audit: record %d holds %d bytes of tree hashes, want %d", seq, len(row), TreeHashesLen(seq))
		}
		out[i] = row[off : off+HashSize]
	}
	return out, nil
}

// Tree is the right edge of the tree as records are appended: what a
// writer needs to give each new record its tree_hashes.
type Tree struct {
	rng *compact.Range
}

// NewTree returns the empty tree.
func NewTree() *Tree { return &Tree{rng: rangeFactory.NewEmptyRange(0)} }

// LoadTree returns the tree of size leaves, its right edge read from r.
func LoadTree(ctx context.Context, r TreeRows, size uint64) (*Tree, error) {
	hashes, err := treeNodes(ctx, r, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	rng, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return &Tree{rng: rng}, nil
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.rng.End() }

// Append adds the leaf of the record with seq Size()+1, whose envelope
// bytes are raw, and returns that record's tree_hashes.
func (t *Tree) Append(raw []byte) []byte {
	return t.AppendHash(LeafHash(raw))
}

// AppendHash is Append with the leaf hash already computed.
func (t *Tree) AppendHash(leaf Hash) []byte {
	out := make([]byte, 0, TreeHashesLen(t.Size()+1))
	out = append(out, leaf[:]...)
	if err := t.rng.Append(append([]byte(nil), leaf[:]...), func(id compact.NodeID, h []byte) {
		if id.Level > 0 {
			out = append(out, h...)
		}
	}); err != nil {
		panic(err) // only a hash of the wrong size fails
	}
	return out
}

// Root returns the root hash (RFC 6962 MTH) of the tree; the empty tree's
// is SHA-256 of nothing.
func (t *Tree) Root() Hash {
	h, err := t.rng.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	if h == nil {
		return Hash(treeHasher.EmptyRoot())
	}
	return Hash(h)
}

// Clone returns an independent copy.
func (t *Tree) Clone() *Tree {
	hashes := append([][]byte(nil), t.rng.Hashes()...)
	rng, _ := rangeFactory.NewRange(0, t.Size(), hashes)
	return &Tree{rng: rng}
}

// RootAt returns the root hash of the tree of the first size records, read
// from r (size must not exceed what r holds).
func RootAt(ctx context.Context, r TreeRows, size uint64) (Hash, error) {
	if size == 0 {
		return Hash(treeHasher.EmptyRoot()), nil
	}
	t, err := LoadTree(ctx, r, size)
	if err != nil {
		return Hash{}, err
	}
	return t.Root(), nil
}

// InclusionProof returns the RFC 6962 audit path of the record with seq in
// the tree of size records (1 ≤ seq ≤ size).
func InclusionProof(ctx context.Context, r TreeRows, seq, size uint64) ([][]byte, error) {
	if seq == 0 || seq > size {
		return nil, fmt.Errorf("%w: record %d is not in a tree of size %d", ErrTreeSize, seq, size)
	}
	n, err := proof.Inclusion(seq-1, size)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, r, n)
}

// ConsistencyProof returns the RFC 6962 consistency proof from the tree of
// size from to the tree of size to (from ≤ to); empty when from is 0 or
// equals to.
func ConsistencyProof(ctx context.Context, r TreeRows, from, to uint64) ([][]byte, error) {
	if from > to {
		return nil, fmt.Errorf("%w: from %d is beyond to %d", ErrTreeSize, from, to)
	}
	n, err := proof.Consistency(from, to)
	if err != nil {
		return nil, err
	}
	return rehash(ctx, r, n)
}

func rehash(ctx context.Context, r TreeRows, n proof.Nodes) ([][]byte, error) {
	hashes, err := treeNodes(ctx, r, n.IDs)
	if err != nil {
		return nil, err
	}
	// Rehash writes into the slice: give it copies of the stored hashes.
	for i, h := range hashes {
		hashes[i] = append([]byte(nil), h...)
	}
	out, err := n.Rehash(hashes, treeHasher.HashChildren)
	if out == nil && err == nil {
		out = [][]byte{}
	}
	return out, err
}

// VerifyInclusion checks that raw, the envelope bytes of the record with
// seq, is in the tree of size leaves whose root is root, by the proof.
func VerifyInclusion(raw []byte, seq, size uint64, hashes [][]byte, root Hash) error {
	if seq == 0 || seq > size {
		return fmt.Errorf("%w: record %d is not in a tree of size %d", ErrTreeSize, seq, size)
	}
	leaf := LeafHash(raw)
	return proof.VerifyInclusion(treeHasher, seq-1, size, leaf[:], hashes, root[:])
}

// VerifyConsistency checks that the tree of size from whose root is
// fromRoot is a prefix of the tree of size to whose root is toRoot.
func VerifyConsistency(from, to uint64, hashes [][]byte, fromRoot, toRoot Hash) error {
	return proof.VerifyConsistency(treeHasher, from, to, hashes, fromRoot[:], toRoot[:])
}
