package audit

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
)

// Source reads stream messages back by sequence: natsbus.Bus,
// memstream.Stream, or Messages. Implementations are safe for concurrent
// use.
type Source interface {
	// ReadRange calls fn, in order, for every message with a sequence in
	// [from, to], with its subject and bytes (fn may keep them); a
	// sequence the stream does not hold is skipped. It stops at fn's
	// first error, which it returns; other errors are the stream's
	// (wrapping events.ErrUnavailable when it does not answer).
	ReadRange(ctx context.Context, from, to uint64, fn func(subject string, seq uint64, raw []byte) error) error
}

// Memory is the audit trail of the embedded default, rebuilt from the
// stream at start. It keeps no message bytes: each record is about 100
// bytes of fixed-size fields (sequence, chain hash, times, event id) and
// indexes of interned strings, and whatever needs the bytes (Scan, and so
// queries, exports and Verify) reads them back from the stream, which
// holds every message anyway. It is safe for concurrent use.
type Memory struct {
	src Source

	mu     sync.RWMutex
	blocks []*[blockLen]entry
	n      int
	head   Hash
	strs   strtab
	odd    map[uint64]*oddFields // by seq: what an entry cannot hold
	resets uint64                // Reset calls: a scan spanning one fails

	// The Merkle tree: its right edge, and each block's records'
	// tree_hashes end to end (64 bytes a record on average). treeErr,
	// once set, is why the trail has no tree (a sequence that is not the
	// next leaf's): every tree read returns it.
	tree    *Tree
	hashes  [][]byte
	treeErr error
}

// blockLen is how many entries a block holds: the trail grows a block at
// a time (100 KiB), never copying what it holds.
const blockLen = 1024

// entry is a record as Memory keeps it: 96 bytes. The previous hash is
// the previous entry's; org, actor id, type and actor kind are strtab
// indexes; the subject is the org's own or audit subject, or kept aside
// (oddFields), as are an event id not in canonical form and an event time
// out of int64 nanoseconds' range. Records of invalid messages have no
// event id, actor or time. A tree hash per record, when the trail gets
// one, is in a block beside the entries (Memory.hashes).
type entry struct {
	seq      uint64
	hash     Hash
	at       int64 // event time, Unix nanoseconds, with flagAt
	recorded int64 // Unix nanoseconds
	id       [16]byte
	org      uint32
	actorID  uint32
	typ      uint32
	kind     uint32
	flags    uint8
}

const (
	flagOrgSubject   = 1 << iota // the subject is events.OrgSubject(org)
	flagAuditSubject             // the subject is events.AuditSubject(org)
	flagID                       // id is the event id
	flagAt                       // at is the event time
	flagActor                    // actorID and kind are set
)

// oddFields holds what an entry cannot: rare, and never for the events
// the ledger writes.
type oddFields struct {
	subject string    // when neither subject flag is set
	eventID string    // a non-canonical form (uppercase, braces, urn:)
	at      time.Time // beyond int64 nanoseconds
}

// NewMemory returns an empty trail whose message bytes src reads back.
func NewMemory(src Source) *Memory { return &Memory{src: src, tree: NewTree()} }

// Append records m. Messages must arrive in stream order without gaps
// beyond what the stream itself has (deleted sequences cannot occur: the
// stream denies deletes). The trail keeps nothing of m's bytes but their
// hash.
func (a *Memory) Append(m *events.Message, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n > 0 && m.Seq <= a.at(a.n-1).seq {
		return fmt.Errorf("audit: sequence %d after %d", m.Seq, a.at(a.n-1).seq)
	}
	e, odd, err := a.entryOf(m, now)
	if err != nil {
		return err
	}
	if odd != (oddFields{}) {
		if a.odd == nil {
			a.odd = map[uint64]*oddFields{}
		}
		a.odd[m.Seq] = &odd
	}
	if a.n%blockLen == 0 {
		a.blocks = append(a.blocks, new([blockLen]entry))
		a.hashes = append(a.hashes, make([]byte, 0, blockTreeBytes))
	}
	*a.at(a.n) = e
	a.appendTree(m)
	a.n++
	a.head = e.hash
	return nil
}

// blockTreeBytes is the most a block's tree_hashes take: 2·blockLen
// hashes, and one more per level above the block.
const blockTreeBytes = HashSize * (2*blockLen + 64)

// appendTree adds m's leaf to the tree and its tree_hashes to the block.
func (a *Memory) appendTree(m *events.Message) {
	if a.treeErr != nil {
		return
	}
	if want := a.tree.Size() + 1; m.Seq != want {
		a.treeErr = fmt.Errorf("audit: no Merkle tree: record %d where leaf %d wants record %d", m.Seq, want-1, want)
		return
	}
	b := &a.hashes[a.n/blockLen]
	*b = append(*b, a.tree.Append(m.Raw)...)
}

// treeHashes returns the i-th entry's tree_hashes (nil without a tree).
func (a *Memory) treeHashes(i int) []byte {
	if a.treeErr != nil {
		return nil
	}
	first := i - i%blockLen
	off := nodesBefore(uint64(i)) - nodesBefore(uint64(first))
	end := off + TreeHashesLen(uint64(i)+1)
	return a.hashes[i/blockLen][off:end:end]
}

// nodesBefore is the offset of leaf i's tree_hashes in all of them end
// to end: the hashes of the 2i - popcount(i) perfect subtrees of the
// first i leaves.
func nodesBefore(i uint64) int {
	return HashSize * int(2*i-uint64(bits.OnesCount64(i)))
}

// TreeRows implements TreeRows.
func (a *Memory) TreeRows(_ context.Context, seqs []uint64) (map[uint64][]byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.treeErr != nil {
		return nil, a.treeErr
	}
	out := make(map[uint64][]byte, len(seqs))
	for _, seq := range seqs {
		if seq >= 1 && seq <= uint64(a.n) {
			out[seq] = a.treeHashes(int(seq - 1))
		}
	}
	return out, nil
}

// TreeSize returns the number of leaves and the root hash of the tree
// over the whole trail.
func (a *Memory) TreeSize(context.Context) (uint64, Hash, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.treeErr != nil {
		return 0, Hash{}, a.treeErr
	}
	return a.tree.Size(), a.tree.Root(), nil
}

// entryOf is NewRecord in the compact form.
func (a *Memory) entryOf(m *events.Message, now time.Time) (entry, oddFields, error) {
	e := entry{seq: m.Seq, hash: Next(a.head, m.Seq, m.Raw), recorded: now.UnixNano()}
	var odd oddFields
	org := m.Org() // what follows either prefix
	switch {
	case strings.HasPrefix(m.Subject, events.OrgPrefix):
		e.flags |= flagOrgSubject
	case strings.HasPrefix(m.Subject, events.AuditPrefix):
		e.flags |= flagAuditSubject
	default:
		odd.subject = m.Subject
	}
	var kind, actorID string
	if env := m.Envelope; env != nil {
		kind, actorID = env.Actor.Kind, env.Actor.ID
		e.flags |= flagActor
		if id, err := uuid.Parse(env.ID); err == nil && canonicalUUID(env.ID) {
			e.id, e.flags = [16]byte(id), e.flags|flagID
		} else {
			odd.eventID = env.ID
		}
		if at := env.At.Time; !at.IsZero() && at.Year() > 1678 && at.Year() < 2262 {
			e.at, e.flags = at.UnixNano(), e.flags|flagAt
		} else {
			odd.at = at
		}
	}
	for _, f := range []struct {
		s   string
		dst *uint32
	}{{org, &e.org}, {m.Type(), &e.typ}, {kind, &e.kind}, {actorID, &e.actorID}} {
		i, ok := a.strs.intern(f.s)
		if !ok {
			return e, odd, errors.New("audit: the in-memory trail's strings outgrew 4 GiB")
		}
		*f.dst = i
	}
	return e, odd, nil
}

// canonicalUUID reports whether s, a UUID, is in the form
// uuid.UUID.String gives back: 36 characters, lowercase hex.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case (c < '0' || c > '9') && (c < 'a' || c > 'f'):
			return false
		}
	}
	return true
}

// at returns the i-th entry.
func (a *Memory) at(i int) *entry { return &a.blocks[i/blockLen][i%blockLen] }

// prev returns the hash before the i-th entry.
func (a *Memory) prev(i int) Hash {
	if i == 0 {
		return Zero
	}
	return a.at(i - 1).hash
}

// Reset empties the trail (the stream was recreated). A Scan that began
// before fails.
func (a *Memory) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.blocks, a.n, a.head, a.strs, a.odd = nil, 0, Zero, strtab{}, nil
	a.tree, a.hashes, a.treeErr = NewTree(), nil, nil
	a.resets++
}

// Head implements Reader: the last sequence and the chain head. It never
// fails.
func (a *Memory) Head(context.Context) (uint64, Hash, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.n == 0 {
		return 0, Zero, nil
	}
	return a.at(a.n - 1).seq, a.head, nil
}

// Len returns the number of records.
func (a *Memory) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.n
}

// search returns the index of the first entry with seq > after.
func (a *Memory) search(after uint64) int {
	return sort.Search(a.n, func(i int) bool { return a.at(i).seq > after })
}

// record returns the i-th entry as a Record, without its message's bytes.
func (a *Memory) record(i int) Record {
	e := a.at(i)
	r := Record{Seq: e.seq, Org: a.strs.str(e.org), Type: a.strs.str(e.typ),
		RecordedAt: time.Unix(0, e.recorded), PrevHash: a.prev(i), Hash: e.hash, Tree: a.treeHashes(i)}
	odd := a.odd[e.seq]
	switch {
	case e.flags&flagOrgSubject != 0:
		r.Subject = events.OrgSubject(r.Org)
	case e.flags&flagAuditSubject != 0:
		r.Subject = events.AuditSubject(r.Org)
	default:
		r.Subject = odd.subject
	}
	if e.flags&flagActor != 0 {
		r.ActorKind, r.ActorID = a.strs.str(e.kind), a.strs.str(e.actorID)
	}
	if e.flags&flagID != 0 {
		r.EventID = uuid.UUID(e.id).String()
	} else if odd != nil {
		r.EventID = odd.eventID
	}
	r.At = a.eventTime(e)
	return r
}

// eventTime returns e's event time; zero for an invalid message.
func (a *Memory) eventTime(e *entry) time.Time {
	if e.flags&flagAt != 0 {
		return time.Unix(0, e.at).UTC()
	}
	if odd := a.odd[e.seq]; odd != nil {
		return odd.at
	}
	return time.Time{}
}

// Messages is a Source over messages held in memory, in ascending seq
// order: a stream already read, as tests and tools hold one.
type Messages []*events.Message

// ReadRange implements Source.
func (ms Messages) ReadRange(ctx context.Context, from, to uint64, fn func(subject string, seq uint64, raw []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := sort.Search(len(ms), func(i int) bool { return ms[i].Seq >= from }); i < len(ms) && ms[i].Seq <= to; i++ {
		if err := fn(ms[i].Subject, ms[i].Seq, ms[i].Raw); err != nil {
			return err
		}
	}
	return nil
}
