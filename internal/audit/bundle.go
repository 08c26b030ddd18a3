package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
)

// InclusionJSON is an inclusion proof as the API gives it
// (GET /api/audit/proof/inclusion): hashes in standard base64.
type InclusionJSON struct {
	Seq       uint64   `json:"seq"`
	LeafIndex uint64   `json:"leaf_index"`
	TreeSize  uint64   `json:"tree_size"`
	Hashes    [][]byte `json:"hashes"`
}

// ConsistencyJSON is a consistency proof as the API gives it.
type ConsistencyJSON struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes [][]byte `json:"hashes"`
}

// Bundle is one record with what proves it is in the trail: its
// inclusion proof and the signed checkpoint the proof is against. Anyone
// with the install's verifier key checks it offline (VerifyBundle); it
// says nothing of any other record.
type Bundle struct {
	Record     RecordJSON    `json:"record"`
	Proof      InclusionJSON `json:"proof"`
	Checkpoint string        `json:"checkpoint"`
}

// BuildBundle proves the record with seq against the checkpoint of size
// (0: the latest signed), read from rd, tree and cps.
func BuildBundle(ctx context.Context, rd Reader, tree TreeRows, cps Checkpoints, seq, size uint64) (Bundle, error) {
	var cp Checkpoint
	var err error
	if size == 0 {
		cp, err = cps.Latest(ctx)
	} else {
		cp, err = cps.BySize(ctx, size)
	}
	if err != nil {
		return Bundle{}, err
	}
	if seq == 0 || seq > cp.Size {
		return Bundle{}, fmt.Errorf("%w: record %d is not in the tree of size %d", ErrTreeSize, seq, cp.Size)
	}
	var rec *RecordJSON
	err = rd.Scan(ctx, Query{After: seq - 1, Limit: 1}, func(r *Record) error {
		if r.Seq == seq {
			j := JSONOf(r)
			rec = &j
		}
		return nil
	})
	if err != nil {
		return Bundle{}, err
	}
	if rec == nil {
		return Bundle{}, fmt.Errorf("%w: no record %d", ErrTreeSize, seq)
	}
	hashes, err := InclusionProof(ctx, tree, seq, cp.Size)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{Record: *rec, Proof: InclusionJSON{Seq: seq, LeafIndex: seq - 1, TreeSize: cp.Size, Hashes: hashes},
		Checkpoint: string(cp.Note)}, nil
}

// Verified is what VerifyBundle established.
type Verified struct {
	Origin   string
	Seq      uint64
	TreeSize uint64
	Root     Hash
}

// VerifyBundle checks b offline against the verifier key vkey: the
// checkpoint is signed by it, the record's hash is its bytes chained after
// its prev_hash, and the proof puts exactly those bytes at leaf seq-1 of
// the checkpoint's tree.
func VerifyBundle(b Bundle, vkey string) (Verified, error) {
	size, root, err := OpenCheckpoint([]byte(b.Checkpoint), vkey)
	if err != nil {
		return Verified{}, err
	}
	v := Verified{Seq: b.Record.Seq, TreeSize: size, Root: root}
	if name, _, ok := strings.Cut(strings.TrimSpace(vkey), "+"); ok {
		v.Origin = name
	}
	switch {
	case b.Proof.Seq != b.Record.Seq || b.Proof.LeafIndex+1 != b.Record.Seq:
		return v, fmt.Errorf("the proof is of record %d (leaf %d), the record is %d", b.Proof.Seq, b.Proof.LeafIndex, b.Record.Seq)
	case b.Proof.TreeSize != size:
		return v, fmt.Errorf("the proof is against a tree of size %d, the checkpoint's is %d", b.Proof.TreeSize, size)
	}
	raw, err := b.Record.Raw()
	if err != nil {
		return v, fmt.Errorf("record %d: its envelope: %w", b.Record.Seq, err)
	}
	prev, err1 := hex.DecodeString(b.Record.PrevHash)
	hash, err2 := hex.DecodeString(b.Record.Hash)
	if err1 != nil || err2 != nil || len(prev) != HashSize || len(hash) != HashSize {
		return v, fmt.Errorf("record %d: hash and prev_hash must be 64 hex digits", b.Record.Seq)
	}
	if Next(Hash(prev), b.Record.Seq, raw) != Hash(hash) {
		return v, fmt.Errorf("record %d: its hash is not SHA-256(prev_hash ‖ seq ‖ envelope)", b.Record.Seq)
	}
	if err := VerifyInclusion(raw, b.Record.Seq, size, b.Proof.Hashes, root); err != nil {
		return v, fmt.Errorf("record %d is not in the tree of size %d: %w", b.Record.Seq, size, err)
	}
	return v, nil
}
