// Package audit defines the tamper-evident audit trail: the record of every
// stream message, the hash chain over them, digests, and an in-memory trail
// for the embedded default. PostgreSQL keeps the same records and the same
// chain.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/events"
)

// Hash is a link of the chain.
type Hash [32]byte

// Zero is hash_0.
var Zero Hash

// Next returns hash_n = SHA-256(hash_{n-1} ‖ uint64be(seq_n) ‖ envelope_raw_n).
func Next(prev Hash, seq uint64, raw []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write(raw)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Hex is the lowercase hex form.
func (h Hash) Hex() string { return hex.EncodeToString(h[:]) }

// Digest is "seq:hex": the chain's head at seq, enough to prove later that
// nothing up to seq changed.
func Digest(seq uint64, h Hash) string { return strconv.FormatUint(seq, 10) + ":" + h.Hex() }

// ParseDigest reads a digest.
func ParseDigest(s string) (uint64, Hash, error) {
	seqS, hexS, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	b, herr := hex.DecodeString(hexS)
	if !ok || err != nil || herr != nil || len(b) != 32 {
		return 0, Hash{}, fmt.Errorf("digest %q: want SEQ:64-hex", s)
	}
	var h Hash
	copy(h[:], b)
	return seq, h, nil
}

// Record is one audited stream message.
type Record struct {
	Seq        uint64
	EventID    string // "" for invalid messages
	Subject    string
	Org        string
	Type       string // events.TypeInvalid for invalid messages
	ActorKind  string
	ActorID    string
	At         time.Time // event time; zero for invalid messages
	RecordedAt time.Time
	Raw        []byte
	PrevHash   Hash
	Hash       Hash
	// Tree is the record's tree_hashes (see Tree): nil when the store has
	// none for it, which Verify reports.
	Tree []byte

	// What a store keeps beside the chained columns, for Verify. Envelope
	// is the store's parsed copy of Raw as JSON text (PostgreSQL's envelope
	// jsonb column; nil when NULL), and EnvelopeKept says the store has such
	// a column: the in-memory trail has not.
	Envelope     []byte
	EnvelopeKept bool
	// Unreadable names a stored column the reader could not represent in
	// this struct, such as a hash that is not 32 bytes; Verify reports it.
	Unreadable string
}

// NewRecord derives a record from a message, chained after prev.
func NewRecord(m *events.Message, prev Hash, recordedAt time.Time) Record {
	r := Record{Seq: m.Seq, Subject: m.Subject, Org: m.Org(), Type: m.Type(), Raw: m.Raw,
		PrevHash: prev, Hash: Next(prev, m.Seq, m.Raw), RecordedAt: recordedAt}
	if e := m.Envelope; e != nil {
		r.EventID, r.ActorKind, r.ActorID, r.At = e.ID, e.Actor.Kind, e.Actor.ID, e.At.Time
	}
	return r
}

// Chain is a writer's position on the trail: the chain head and the tree.
// Its Append makes each record with its hash and tree_hashes.
type Chain struct {
	Head Hash
	Tree *Tree
}

// NewChain returns the position before the first record.
func NewChain() *Chain { return &Chain{Tree: NewTree()} }

// Append returns the record of m, the next message, and moves on.
func (c *Chain) Append(m *events.Message, recordedAt time.Time) Record {
	r := NewRecord(m, c.Head, recordedAt)
	r.Tree = c.Tree.Append(m.Raw)
	c.Head = r.Hash
	return r
}
