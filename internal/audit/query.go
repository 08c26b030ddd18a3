package audit

import (
	"context"
	"slices"
	"sort"
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
	Limit        int    // at most this many records; 0 = all
	// Scope is the orgs the caller may see: nil = every org, empty = none.
	// It applies on top of Org, so no filter or cursor reaches beyond it.
	Scope []string
}

// Match reports whether r passes q's filters, cursor and scope (not its
// limit).
func (q *Query) Match(r *Record) bool {
	switch {
	case r.Seq <= q.After,
		q.Org != "" && r.Org != q.Org,
		q.Type != "" && r.Type != q.Type,
		q.Scope != nil && !slices.Contains(q.Scope, r.Org):
		return false
	}
	if q.Since.IsZero() && q.Until.IsZero() {
		return true
	}
	return !r.At.IsZero() && (q.Since.IsZero() || !r.At.Before(q.Since)) &&
		(q.Until.IsZero() || r.At.Before(q.Until))
}

// Reader reads an audit trail. Implementations are safe for concurrent use
// and stream: memory use does not grow with the number of records.
type Reader interface {
	// Scan calls fn for every record matching q, in ascending seq order,
	// at most q.Limit of them, and stops at fn's first error, which it
	// returns. The record is valid only during the call (readers may reuse
	// it) and must not be modified. Other errors are the context's or the
	// store's.
	Scan(ctx context.Context, q Query, fn func(*Record) error) error
	// Head returns the last sequence and its hash: (0, Zero) for an empty
	// trail.
	Head(ctx context.Context) (uint64, Hash, error)
}

// scanChunk bounds what Memory.Scan copies, and examines, per lock hold:
// appends wait for a chunk at most, never for fn.
const scanChunk = 256

// Scan implements Reader. It copies matching records a chunk at a time
// and calls fn without holding the lock, so a slow consumer (an HTTP
// client) never stalls appends.
func (a *Memory) Scan(ctx context.Context, q Query, fn func(*Record) error) error {
	buf := make([]Record, 0, scanChunk)
	after, sent := q.After, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := scanChunk
		if q.Limit > 0 {
			want = min(want, q.Limit-sent)
		}
		var more bool
		buf, after, more = a.chunk(buf[:0], &q, after, want)
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

// chunk appends to buf up to want records matching q with seq > after,
// examining at most 16 chunks' worth of records. It returns the last seq
// examined and whether records remain beyond it.
func (a *Memory) chunk(buf []Record, q *Query, after uint64, want int) ([]Record, uint64, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	i := sort.Search(len(a.records), func(i int) bool { return a.records[i].Seq > after })
	for n := 0; i < len(a.records) && len(buf) < want && n < 16*scanChunk; i, n = i+1, n+1 {
		r := &a.records[i]
		after = r.Seq
		if q.Match(r) {
			buf = append(buf, *r)
		}
	}
	return buf, after, i < len(a.records)
}
