package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
)

// StreamLookup returns the subject and bytes of the stream message at seq,
// or ("", nil, nil) when the stream holds no message there.
type StreamLookup func(ctx context.Context, seq uint64) (subject string, raw []byte, err error)

// differs compares r with the stream's message of the same seq: the column
// that differs (ColEnvelopeRaw, ColSubject), or "" when they agree or
// there is no stream to compare with.
func (lookup StreamLookup) differs(ctx context.Context, r *Record) (string, error) {
	if lookup == nil {
		return "", nil
	}
	subject, raw, err := lookup(ctx, r.Seq)
	if err != nil {
		return "", fmt.Errorf("stream message %d: %w", r.Seq, err)
	}
	switch {
	case subject == "" || !bytes.Equal(raw, r.Raw):
		return ColEnvelopeRaw, nil
	case subject != r.Subject:
		return ColSubject, nil
	}
	return "", nil
}

// VerifyOptions are the optional checks of Verify.
type VerifyOptions struct {
	// Digest, "SEQ:HEX", must be on the chain: the record at SEQ has hash
	// HEX (SEQ 0 names the empty chain, whose hash is Zero).
	Digest string
	// Stream, when set, must hold every record's message: the same subject
	// and the same bytes at the same sequence.
	Stream StreamLookup
	// Scope, when not nil, limits the verification to the records of these
	// orgs and keeps the others out of the Result (see Verify). A scoped
	// verification takes no Digest, which covers the whole trail.
	Scope []string
}

// The columns Verify names, as in the license_audit table; ColDigest is
// the VerifyOptions.Digest that is not on the chain.
const (
	ColSeq         = "seq"
	ColPrevHash    = "prev_hash"
	ColHash        = "hash"
	ColEnvelopeRaw = "envelope_raw"
	ColSubject     = "subject"
	ColEventID     = "event_id"
	ColOrg         = "org_slug"
	ColType        = "type"
	ColActorKind   = "actor_kind"
	ColActorID     = "actor_id"
	ColOccurredAt  = "occurred_at"
	ColEnvelope    = "envelope"
	ColDigest      = "digest"
)

// Result is the outcome of Verify.
type Result struct {
	OK bool
	// Rows is the number of records that verified, from seq 1 up to the
	// first bad one or the end.
	Rows uint64
	// BadSeq and Column say where verification failed first: the missing
	// seq of a gap, else the record whose Column does not hold. Column is
	// "" when OK.
	BadSeq uint64
	Column string
	// Digest is the chain head over the records that verified: the whole
	// trail's digest when OK. "" for a scoped verification.
	Digest string
	// Scope is the orgs a scoped verification covered; nil for the whole
	// trail. Rows, BadSeq and Column then count and name records of these
	// orgs only.
	Scope []string
}

// String is what `ledger audit verify` prints: "ok <rows> <digest>", for
// a scoped verification "ok <rows> scope=<org,…>", or "mismatch at seq N
// (<column>)".
func (r Result) String() string {
	switch {
	case !r.OK:
		return fmt.Sprintf("mismatch at seq %d (%s)", r.BadSeq, r.Column)
	case r.Scope != nil:
		return "ok " + strconv.FormatUint(r.Rows, 10) + " scope=" + strings.Join(r.Scope, ",")
	}
	return "ok " + strconv.FormatUint(r.Rows, 10) + " " + r.Digest
}

// resultJSON is the wire form of GET /api/audit/verify: first_bad_seq and
// column are null when ok; digest is null, and scope present, for a scoped
// verification.
type resultJSON struct {
	OK     bool    `json:"ok"`
	Rows   uint64  `json:"rows_checked"`
	BadSeq *uint64 `json:"first_bad_seq"`
	Column *string `json:"column"`
	Digest *string `json:"digest"`
}

// scopedJSON is resultJSON with the scope, which a verification of the
// whole trail leaves out.
type scopedJSON struct {
	resultJSON
	Scope []string `json:"scope"`
}

// MarshalJSON writes {"ok", "rows_checked", "first_bad_seq", "column",
// "digest"}, and "scope" (with a null digest) when scoped.
func (r Result) MarshalJSON() ([]byte, error) {
	w := resultJSON{OK: r.OK, Rows: r.Rows}
	if !r.OK {
		w.BadSeq, w.Column = &r.BadSeq, &r.Column
	}
	if r.Scope == nil {
		w.Digest = &r.Digest
		return json.Marshal(w)
	}
	return json.Marshal(scopedJSON{w, r.Scope})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w scopedJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Result{OK: w.OK, Rows: w.Rows, Scope: w.Scope}
	if w.Digest != nil {
		r.Digest = *w.Digest
	}
	if w.BadSeq != nil {
		r.BadSeq = *w.BadSeq
	}
	if w.Column != nil {
		r.Column = *w.Column
	}
	return nil
}

// Verify walks the whole trail in seq order, in constant memory, and
// checks that sequences run from 1 without a gap, that each prev_hash is
// the previous hash, that each hash is SHA-256(prev ‖ uint64be(seq) ‖
// envelope_raw), and that every column derived from envelope_raw (event
// id, org, type, actor, time, and the store's parsed envelope) is what
// events.Decode and NewRecord make of it; then the options' checks. It
// stops at the first failure, which the Result names; an error means the
// walk itself failed (store or stream unavailable, bad digest syntax).
//
// A record whose hash does not match its bytes is named "hash" unless the
// next record's prev_hash vouches for the stored hash, in which case the
// bytes changed: "envelope_raw".
//
// With opts.Scope, Verify checks the records of those orgs only (see
// verifyScoped), and the Result says nothing of the others.
func Verify(ctx context.Context, rd Reader, opts VerifyOptions) (Result, error) {
	if opts.Scope != nil {
		if opts.Digest != "" {
			return Result{}, errors.New("audit: a digest covers the whole trail, not a scope")
		}
		return verifyScoped(ctx, rd, opts)
	}
	v := &verifier{ctx: ctx, stream: opts.Stream, tree: NewTree()}
	if opts.Digest != "" {
		seq, h, err := ParseDigest(opts.Digest)
		if err != nil {
			return Result{}, err
		}
		v.hasDigest, v.digestSeq, v.digestHash = true, seq, h
	}
	err := rd.Scan(ctx, Query{}, v.check)
	if err != nil && !errors.Is(err, errStop) {
		return v.result(), err
	}
	if v.pending && v.col == "" { // the mismatch was the last record
		v.fail(v.pendSeq, ColHash)
	}
	if v.col == "" && v.hasDigest && !v.digestSeen && (v.digestSeq != 0 || v.digestHash != Zero) {
		v.fail(v.digestSeq, ColDigest)
	}
	return v.result(), nil
}

// errStop ends a scan at the first failure.
var errStop = errors.New("audit: verification stopped")

type verifier struct {
	ctx    context.Context
	stream StreamLookup

	hasDigest, digestSeen bool
	digestSeq             uint64
	digestHash            Hash

	head    Hash // hash of the last record that verified
	headSeq uint64
	rows    uint64
	tree    *Tree // over the records that verified

	// A hash mismatch waits for the next record to name its column.
	pending              bool
	pendSeq              uint64
	pendStored, pendHash Hash

	badSeq uint64
	col    string
}

func (v *verifier) result() Result {
	return Result{OK: v.col == "", Rows: v.rows, BadSeq: v.badSeq, Column: v.col, Digest: Digest(v.headSeq, v.head)}
}

func (v *verifier) fail(seq uint64, col string) error {
	v.badSeq, v.col = seq, col
	return errStop
}

func (v *verifier) check(r *Record) error {
	if v.pending {
		if r.Seq == v.pendSeq+1 && r.PrevHash == v.pendStored {
			return v.fail(v.pendSeq, ColEnvelopeRaw)
		}
		return v.fail(v.pendSeq, ColHash)
	}
	if want := v.headSeq + 1; r.Seq != want {
		return v.fail(min(want, r.Seq), ColSeq)
	}
	if r.PrevHash != v.head {
		return v.fail(r.Seq, ColPrevHash)
	}
	if r.Unreadable != "" {
		return v.fail(r.Seq, r.Unreadable)
	}
	if col, err := v.stream.differs(v.ctx, r); err != nil || col != "" {
		if err != nil {
			return err
		}
		return v.fail(r.Seq, col)
	}
	if h := Next(v.head, r.Seq, r.Raw); h != r.Hash {
		v.pending, v.pendSeq, v.pendStored, v.pendHash = true, r.Seq, r.Hash, h
		return nil
	}
	if col := derivedMismatch(r, v.head); col != "" {
		return v.fail(r.Seq, col)
	}
	// The record's stored tree_hashes are those the records before it
	// and its bytes make (a failure ends the walk: the tree may go on
	// holding the record).
	if !bytes.Equal(v.tree.Append(r.Raw), r.Tree) {
		return v.fail(r.Seq, ColTreeHashes)
	}
	if v.hasDigest && r.Seq == v.digestSeq {
		v.digestSeen = true
		if r.Hash != v.digestHash {
			return v.fail(r.Seq, ColDigest)
		}
	}
	v.head, v.headSeq = r.Hash, r.Seq
	v.rows++
	return nil
}

// derivedMismatch returns the first column of r that differs from what its
// raw bytes make, or "".
func derivedMismatch(r *Record, prev Hash) string {
	d := NewRecord(events.Decode(r.Subject, r.Seq, r.Raw), prev, time.Time{})
	switch {
	case !sameEventID(d.EventID, r.EventID):
		return ColEventID
	case d.Org != r.Org:
		return ColOrg
	case d.Type != r.Type:
		return ColType
	case d.ActorKind != r.ActorKind:
		return ColActorKind
	case d.ActorID != r.ActorID:
		return ColActorID
	case !sameTime(d.At, r.At):
		return ColOccurredAt
	case r.EnvelopeKept && !sameEnvelope(r.Envelope, r.Raw):
		return ColEnvelope
	}
	return ""
}

// sameEventID compares UUIDs by value (a uuid column prints them in
// canonical lowercase; an envelope may not).
func sameEventID(derived, stored string) bool {
	if derived == stored {
		return true
	}
	a, errA := uuid.Parse(derived)
	b, errB := uuid.Parse(stored)
	return errA == nil && errB == nil && a == b
}

// sameTime allows the sub-microsecond difference of a timestamptz column
// (it keeps microseconds, rounded or truncated by the writer).
func sameTime(derived, stored time.Time) bool {
	if derived.IsZero() || stored.IsZero() {
		return derived.IsZero() == stored.IsZero()
	}
	d := derived.Sub(stored)
	return d > -time.Microsecond && d < time.Microsecond
}

// JSONBStorable reports whether raw can be kept in a jsonb column, and so
// whether a store's parsed envelope column holds it (else NULL): valid
// UTF-8 JSON without the \u0000 escape jsonb refuses.
func JSONBStorable(raw []byte) bool {
	return utf8.Valid(raw) && json.Valid(raw) && !bytes.Contains(raw, []byte(`\u0000`))
}

// sameEnvelope reports whether a stored parsed envelope (nil: NULL) is what
// raw should give: NULL when raw is not JSONBStorable, else the same JSON
// value (keys in any order, numbers by value, the last of duplicate keys).
func sameEnvelope(stored, raw []byte) bool {
	if !JSONBStorable(raw) {
		return stored == nil
	}
	if stored == nil {
		return false
	}
	a, errA := decodeJSON(stored)
	b, errB := decodeJSON(raw)
	return errA == nil && errB == nil && jsonEqual(a, b)
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !jsonEqual(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && sameNumber(string(a), string(b))
	}
	return a == b // string, bool, nil
}

// sameNumber compares JSON numbers by value (jsonb prints 1e2 as 100), at
// a precision far beyond anything an envelope holds.
func sameNumber(a, b string) bool {
	if a == b {
		return true
	}
	x, _, errX := big.ParseFloat(a, 10, 1024, big.ToNearestEven)
	y, _, errY := big.ParseFloat(b, 10, 1024, big.ToNearestEven)
	return errX == nil && errY == nil && x.Cmp(y) == 0
}
