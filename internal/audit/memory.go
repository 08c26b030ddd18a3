package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/events"
)

// Memory is the audit trail of the embedded default, rebuilt from the
// stream at start. It is safe for concurrent use.
type Memory struct {
	mu      sync.RWMutex
	records []Record
	head    Hash
}

// NewMemory returns an empty trail.
func NewMemory() *Memory { return &Memory{} }

// Append records m. Messages must arrive in stream order without gaps
// beyond what the stream itself has (deleted sequences cannot occur: the
// stream denies deletes).
func (a *Memory) Append(m *events.Message, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.records); n > 0 && m.Seq <= a.records[n-1].Seq {
		return fmt.Errorf("audit: sequence %d after %d", m.Seq, a.records[n-1].Seq)
	}
	r := NewRecord(m, a.head, now)
	a.records = append(a.records, r)
	a.head = r.Hash
	return nil
}

// Reset empties the trail (the stream was recreated).
func (a *Memory) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records, a.head = nil, Zero
}

// Head implements Reader: the last sequence and the chain head. It never
// fails.
func (a *Memory) Head(context.Context) (uint64, Hash, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.records) == 0 {
		return 0, Zero, nil
	}
	return a.records[len(a.records)-1].Seq, a.head, nil
}

// Len returns the number of records.
func (a *Memory) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.records)
}

// Records returns a copy of the records with Seq > after, at most limit (0:
// all) that match keep (nil: all).
func (a *Memory) Records(after uint64, limit int, keep func(*Record) bool) []Record {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []Record
	for i := range a.records {
		r := &a.records[i]
		if r.Seq <= after || (keep != nil && !keep(r)) {
			continue
		}
		out = append(out, *r)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}
