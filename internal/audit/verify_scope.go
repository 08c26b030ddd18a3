package audit

import (
	"context"
	"errors"
	"slices"

	"github.com/licenseledger/ledger/internal/events"
)

// verifyScoped verifies the records of opts.Scope's orgs — those whose org
// column or subject names one of them — against the whole trail, and
// reports on them alone: Rows counts them, BadSeq is one of theirs, and no
// digest is given. Each such record must
//
//   - follow the record before it in the trail: the next seq, and a
//     prev_hash equal to that record's stored hash (else "seq",
//     "prev_hash");
//   - hash to its stored hash from its prev_hash, seq and envelope_raw,
//     with every derived column as Verify checks it (else that column);
//   - be followed by a record whose prev_hash is its stored hash, when one
//     follows (else "hash", or "envelope_raw" when the successor vouches
//     for a stored hash the bytes no longer make; "seq" for a gap);
//   - match the stream's message, when Stream is set.
//
// The walk reads every record, in one pass and constant memory, but uses
// other orgs' records only for their seq, hash and prev_hash at the edges
// of the scope's records: their contents are never checked nor reported.
// A link to a neighbour that fails names the scope's record, whichever
// side of the link changed.
func verifyScoped(ctx context.Context, rd Reader, opts VerifyOptions) (Result, error) {
	v := &scopedVerifier{ctx: ctx, stream: opts.Stream, scope: opts.Scope}
	err := rd.Scan(ctx, Query{}, v.check)
	if err != nil && !errors.Is(err, errStop) {
		return v.result(), err
	}
	if v.col == "" && v.own.pending {
		v.settle(nil)
	}
	return v.result(), nil
}

type scopedVerifier struct {
	ctx    context.Context
	stream StreamLookup
	scope  []string

	// The previous record of the trail, whatever its org.
	prevSeq  uint64
	prevHash Hash

	// own is the last record in scope, waiting for the record after it to
	// vouch for its hash.
	own struct {
		pending bool
		seq     uint64
		hash    Hash // stored
		hashOK  bool // the stored hash is what its bytes make
	}

	rows   uint64
	badSeq uint64
	col    string
}

func (v *scopedVerifier) result() Result {
	return Result{OK: v.col == "", Rows: v.rows, BadSeq: v.badSeq, Column: v.col, Scope: v.scope}
}

func (v *scopedVerifier) fail(seq uint64, col string) error {
	v.badSeq, v.col = seq, col
	return errStop
}

// inScope reports whether r belongs to the scope by its org column or by
// its subject (the column may be what was changed).
func (v *scopedVerifier) inScope(r *Record) bool {
	m := events.Message{Subject: r.Subject}
	return slices.Contains(v.scope, r.Org) || slices.Contains(v.scope, m.Org())
}

func (v *scopedVerifier) check(r *Record) error {
	if v.own.pending {
		if err := v.settle(r); err != nil {
			return err
		}
	}
	prevSeq, prevHash := v.prevSeq, v.prevHash
	v.prevSeq, v.prevHash = r.Seq, r.Hash
	if !v.inScope(r) {
		return nil
	}
	switch {
	case r.Seq != prevSeq+1:
		return v.fail(r.Seq, ColSeq)
	case r.PrevHash != prevHash:
		return v.fail(r.Seq, ColPrevHash)
	case r.Unreadable != "":
		return v.fail(r.Seq, r.Unreadable)
	}
	if col, err := v.stream.differs(v.ctx, r); err != nil || col != "" {
		if err != nil {
			return err
		}
		return v.fail(r.Seq, col)
	}
	hashOK := Next(r.PrevHash, r.Seq, r.Raw) == r.Hash
	if hashOK {
		if col := derivedMismatch(r, r.PrevHash); col != "" {
			return v.fail(r.Seq, col)
		}
	}
	v.own.pending, v.own.seq, v.own.hash, v.own.hashOK = true, r.Seq, r.Hash, hashOK
	return nil
}

// settle decides the pending record of the scope once the record after
// it (nil: none, the trail ends) is known. A successor in scope that does
// not link is its own failure, found when it is checked.
func (v *scopedVerifier) settle(next *Record) error {
	o := v.own
	v.own.pending = false
	linked := next != nil && next.Seq == o.seq+1 && next.PrevHash == o.hash
	switch {
	case !o.hashOK && linked:
		return v.fail(o.seq, ColEnvelopeRaw)
	case !o.hashOK:
		return v.fail(o.seq, ColHash)
	case next != nil && !linked && !v.inScope(next):
		if next.Seq != o.seq+1 {
			return v.fail(o.seq, ColSeq)
		}
		return v.fail(o.seq, ColHash)
	}
	v.rows++
	return nil
}
