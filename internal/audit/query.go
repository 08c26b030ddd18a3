package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Query selects audit records. The zero Query selects every record.
type Query struct {
	Org  string // only records of this org ("" = any)
	Type string // only records of this type ("" = any)
	// Since (inclusive) and Until (exclusive) bound the event's at; zero
	// means no bound. Records without an event time (invalid messages)
	// never match a time bound.
	Since, Until time.Time
	After        uint64 // only records with seq > After: the cursor
	// Before, when nonzero, keeps only records with seq < Before: the
	// cursor of a descending scan.
	Before uint64
	// Desc scans newest first: descending seq order (Limit then keeps
	// the newest).
	Desc  bool
	Limit int // at most this many records; 0 = all
	// Scope is the orgs the caller may see: nil = every org, empty = none.
	// It applies on top of Org, so no filter or cursor reaches beyond it.
	Scope []string
}

// Match reports whether r passes q's filters, cursor and scope (not its
// limit).
func (q *Query) Match(r *Record) bool {
	switch {
	case r.Seq <= q.After,
		q.Before != 0 && r.Seq >= q.Before,
		q.Org != "" && r.Org != q.Org,
		q.Type != "" && r.Type != q.Type,
		q.Scope != nil && !slices.Contains(q.Scope, r.Org):
		return false
	}
	return q.matchTime(r.At)
}

// matchTime reports whether an event time at passes q's time bounds.
func (q *Query) matchTime(at time.Time) bool {
	if q.Since.IsZero() && q.Until.IsZero() {
		return true
	}
	return !at.IsZero() && (q.Since.IsZero() || !at.Before(q.Since)) &&
		(q.Until.IsZero() || at.Before(q.Until))
}

// Reader reads an audit trail. Implementations are safe for concurrent use
// and stream: memory use does not grow with the number of records.
type Reader interface {
	// Scan calls fn for every record matching q, in ascending seq order
	// (descending with q.Desc), at most q.Limit of them, and stops at fn's first error, which it
	// returns. The record is valid only during the call (readers may reuse
	// it) and must not be modified. Other errors are the context's or the
	// store's.
	Scan(ctx context.Context, q Query, fn func(*Record) error) error
	// Head returns the last sequence and its hash: (0, Zero) for an empty
	// trail.
	Head(ctx context.Context) (uint64, Hash, error)
}

// scanChunk bounds what Memory.Scan copies, and examines, per lock hold:
// appends wait for a chunk at most, never for fn nor for the stream.
const scanChunk = 256

// ErrReset is Memory.Scan's error when the trail was reset (the stream
// recreated) while it ran: what it read may belong to either stream.
var ErrReset = errors.New("audit: the trail was rebuilt from a recreated stream during the read; retry")

// Scan implements Reader. It copies matching records a chunk at a time,
// reads their messages' bytes back from the stream (a range read per run
// of nearby sequences), and calls fn, holding the lock for neither. A
// record whose message the stream no longer holds has no bytes and
// Unreadable "envelope_raw"; one whose message is on another subject has
// Unreadable "subject": Verify reports either. Errors: fn's, ctx's, the
// stream's (wrapping events.ErrUnavailable when it does not answer), and
// ErrReset.
func (a *Memory) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	buf := make([]Record, 0, scanChunk)
	pos, sent := q.After, 0 // the last seq examined: the next chunk starts past it
	if q.Desc {
		pos = q.Before
	}
	var resets uint64
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := scanChunk
		if q.Limit > 0 {
			want = min(want, q.Limit-sent)
		}
		var more bool
		var r uint64
		if q.Desc {
			buf, pos, more, r = a.chunkDesc(buf[:0], &q, pos, want)
			slices.Reverse(buf) // readBack reads in ascending order
		} else {
			buf, pos, more, r = a.chunk(buf[:0], &q, pos, want)
		}
		if first {
			resets = r
		}
		if r != resets {
			return ErrReset
		}
		if err := a.readBack(ctx, buf); err != nil {
			return err
		}
		if a.resetSince(resets) { // the bytes may be the new stream's
			return ErrReset
		}
		if q.Desc {
			slices.Reverse(buf)
		}
		for i := range buf {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		sent += len(buf)
		if !more || (q.Limit > 0 && sent >= q.Limit) {
			return nil
		}
	}
}

func (a *Memory) resetSince(resets uint64) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.resets != resets
}

// chunk appends to buf up to want records matching q with seq > after,
// without their bytes, examining at most 16 chunks' worth of records. It
// returns the last seq examined, whether records remain beyond it, and
// the number of resets so far.
func (a *Memory) chunk(buf []Record, q *Query, after uint64, want int) ([]Record, uint64, bool, uint64) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	m := a.compile(q)
	if m.none {
		return buf, after, false, a.resets
	}
	end := a.n
	if q.Before != 0 {
		end = a.search(q.Before - 1)
	}
	i := a.search(after)
	for n := 0; i < end && len(buf) < want && n < 16*scanChunk; i, n = i+1, n+1 {
		e := a.at(i)
		after = e.seq
		if a.matches(&m, e) {
			buf = append(buf, a.record(i))
		}
	}
	return buf, after, i < end, a.resets
}

// chunkDesc is chunk newest first: it appends up to want records matching
// q with seq < before (0: the newest on), in descending seq order, and
// returns the last (lowest) seq examined.
func (a *Memory) chunkDesc(buf []Record, q *Query, before uint64, want int) ([]Record, uint64, bool, uint64) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	m := a.compile(q)
	if m.none {
		return buf, before, false, a.resets
	}
	i := a.n - 1
	if before != 0 {
		i = a.search(before-1) - 1
	}
	low := a.search(q.After)
	for n := 0; i >= low && len(buf) < want && n < 16*scanChunk; i, n = i-1, n+1 {
		e := a.at(i)
		before = e.seq
		if a.matches(&m, e) {
			buf = append(buf, a.record(i))
		}
	}
	return buf, before, i >= low, a.resets
}

// entryMatch is a Query in terms of the trail's string indexes.
type entryMatch struct {
	q        *Query
	org, typ uint32
	scope    []uint32 // nil: every org
	none     bool     // a filter names what no record holds
}

func (a *Memory) compile(q *Query) entryMatch {
	m := entryMatch{q: q}
	var ok bool
	if q.Org != "" {
		if m.org, ok = a.strs.lookup(q.Org); !ok {
			m.none = true
		}
	}
	if q.Type != "" {
		if m.typ, ok = a.strs.lookup(q.Type); !ok {
			m.none = true
		}
	}
	if q.Scope != nil {
		m.scope = make([]uint32, 0, len(q.Scope))
		for _, org := range q.Scope {
			if i, ok := a.strs.lookup(org); ok {
				m.scope = append(m.scope, i)
			}
		}
		m.none = m.none || len(m.scope) == 0
	}
	return m
}

// matches is Query.Match on an entry (whose seq is past the cursor).
func (a *Memory) matches(m *entryMatch, e *entry) bool {
	switch {
	case m.q.Org != "" && e.org != m.org,
		m.q.Type != "" && e.typ != m.typ,
		m.scope != nil && !slices.Contains(m.scope, e.org):
		return false
	}
	return m.q.matchTime(a.eventTime(e))
}

// readGap is the largest distance between two records' sequences that
// one range read covers: closer records share a read, farther ones (an
// org's records among many others) are read apart.
const readGap = 64

// readBack fills recs' Raw from the stream. A message it does not find
// is looked for again for a moment (a replica of the stream may be behind
// the one the trail followed), then reported through Unreadable.
func (a *Memory) readBack(ctx context.Context, recs []Record) error {
	if len(recs) > 0 && a.src == nil {
		return errors.New("audit: no stream to read the records' bytes back from")
	}
	found := make([]bool, len(recs))
	for try := 0; ; try++ {
		missing := false
		for i := 0; i < len(recs); {
			if found[i] {
				i++
				continue
			}
			j := i
			for j+1 < len(recs) && !found[j+1] && recs[j+1].Seq-recs[j].Seq <= readGap {
				j++
			}
			if err := a.readRun(ctx, recs[i:j+1], found[i:j+1]); err != nil {
				return err
			}
			for k := i; k <= j; k++ {
				missing = missing || !found[k]
			}
			i = j + 1
		}
		if !missing || try == readTries-1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(readRetry):
		}
	}
	for i := range recs {
		if !found[i] {
			recs[i].Raw, recs[i].Unreadable = nil, ColEnvelopeRaw
		}
	}
	return nil
}

// How long readBack looks for a message the stream does not give.
const (
	readTries = 5
	readRetry = 200 * time.Millisecond
)

// readRun reads the messages of recs, in seq order, with one range read.
func (a *Memory) readRun(ctx context.Context, recs []Record, found []bool) error {
	from, to := recs[0].Seq, recs[len(recs)-1].Seq
	k := 0
	err := a.src.ReadRange(ctx, from, to, func(subject string, seq uint64, raw []byte) error {
		for k < len(recs) && recs[k].Seq < seq {
			k++
		}
		if k == len(recs) || recs[k].Seq != seq {
			return nil
		}
		recs[k].Raw, found[k] = raw, true
		if subject != recs[k].Subject {
			recs[k].Unreadable = ColSubject
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: reading records %d to %d back from the stream: %w", from, to, err)
	}
	return nil
}
