// Package streamtest is the conformance suite of the license event stream:
// one set of tests that every implementation of the stream surface the
// ledger's readers and writers use (natsbus.Bus on a JetStream server,
// memstream.Stream in memory) must pass, so that a test run on one says
// what the other would do. JetStream is the reference: where the two could
// differ, the suite holds what JetStream does.
//
// It is a test helper: only _test.go files import it.
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
)

// Store is the stream surface under test: all the command layer needs
// (ledger.Store: Head, Next, ReadSubject, Append, Newest), what followers
// need (Info, Stream, Consume), and Get.
type Store interface {
	ledger.Store
	Get(ctx context.Context, seq uint64) (*events.Message, error)
	Info(ctx context.Context) (events.StreamInfo, error)
	Stream(ctx context.Context) (created time.Time, head uint64, err error)
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
	ReadRange(ctx context.Context, from, to uint64, fn func(subject string, seq uint64, data []byte) error) error
}

// Open returns a new, empty stream for one subtest, and arranges with
// t.Cleanup for whatever it started to stop.
type Open func(t *testing.T) Store

// Run runs every conformance test as a subtest of t, each on a stream of
// its own from open.
func Run(t *testing.T, open Open) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

// Names lists the subtests Run runs, in order.
func Names() []string {
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	return names
}

var cases = []struct {
	name string
	run  func(*testing.T, Store)
}{
	{"Empty", testEmpty},
	{"AppendAndReadBack", testAppendAndReadBack},
	{"ExpectedLastSubjectSequence", testExpectedLastSubjectSequence},
	{"ConcurrentAppendsOneSubject", testConcurrentAppendsOneSubject},
	{"DuplicateEventID", testDuplicateEventID},
	{"SubjectRanges", testSubjectRanges},
	{"ReadSubjectStopsOnError", testReadSubjectStopsOnError},
	{"DecodesAsEvents", testDecodesAsEvents},
	{"SubjectOutsideStream", testSubjectOutsideStream},
	{"MaxPayload", testMaxPayload},
	{"CancelledContext", testCancelledContext},
	{"ConsumeFromStart", testConsumeFromStart},
	{"ConsumeFromZero", testConsumeFromZero},
	{"ConsumeWaitsForAppends", testConsumeWaitsForAppends},
	{"ConsumeOrderUnderConcurrentAppends", testConsumeOrderUnderConcurrentAppends},
	{"ConsumeStopsWithContext", testConsumeStopsWithContext},
	{"ConsumeIdle", testConsumeIdle},
	{"ReadRange", testReadRange},
}

// timeout bounds every operation of a subtest: a store that hangs fails
// instead of blocking the suite.
const timeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

var actor = events.Actor{Kind: events.ActorOperator, ID: "streamtest"}

// removed is a license.removed event for org after prev.
func removed(t *testing.T, org string, prev uint64) *events.Envelope {
	t.Helper()
	env, err := events.New(events.TypeRemoved, org, time.Now(), actor, prev, events.Removed{LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab"})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// appendOn appends an event on org's subject after its head and returns
// its sequence.
func appendOn(t *testing.T, s Store, org string) uint64 {
	t.Helper()
	ctx := testContext(t)
	subject := events.OrgSubject(org)
	// On a replicated stream Head may be answered by a follower that has
	// not applied the last append yet (direct gets): the append then meets
	// a conflict, and is retried from the head read again, as a writer
	// does after a conflict.
	for attempt := 0; ; attempt++ {
		head, err := s.Head(ctx, subject)
		if err != nil {
			t.Fatalf("head of %s: %v", subject, err)
		}
		seq, err := s.Append(ctx, subject, removed(t, org, head), head)
		if errors.Is(err, events.ErrConflict) && attempt < 20 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("append on %s after %d: %v", subject, head, err)
		}
		return seq
	}
}

func lastSeq(t *testing.T, s Store) uint64 {
	t.Helper()
	info, err := s.Info(testContext(t))
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	return info.LastSeq
}

// subjectSeqs lists the sequences ReadSubject delivers on subject in
// (after, upTo].
func subjectSeqs(t *testing.T, s Store, subject string, after, upTo uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	err := s.ReadSubject(testContext(t), subject, after, upTo, func(m *events.Message) error {
		if m.Subject != subject {
			return fmt.Errorf("seq %d on %s, asked for %s", m.Seq, m.Subject, subject)
		}
		seqs = append(seqs, m.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("read %s (%d, %d]: %v", subject, after, upTo, err)
	}
	return seqs
}

func seqList(seqs []uint64) string { return fmt.Sprint(seqs) }

// An empty stream has no head, no newest message and no message at any
// sequence, and says when it was created.
func testEmpty(t *testing.T, s Store) {
	ctx := testContext(t)
	info, err := s.Info(ctx)
	if err != nil || info.LastSeq != 0 || info.Name == "" || info.Created.IsZero() {
		t.Fatalf("info %+v, %v", info, err)
	}
	created, head, err := s.Stream(ctx)
	if err != nil || head != 0 || !created.Equal(info.Created) {
		t.Fatalf("stream: created %v head %d (%v); info created %v", created, head, err, info.Created)
	}
	if h, err := s.Head(ctx, events.OrgSubject("acme")); err != nil || h != 0 {
		t.Fatalf("head %d, %v", h, err)
	}
	if m, err := s.Newest(ctx); err != nil || m != nil {
		t.Fatalf("newest %+v, %v", m, err)
	}
	if m, err := s.Get(ctx, 1); err != nil || m != nil {
		t.Fatalf("get 1: %+v, %v", m, err)
	}
	if m, err := s.Next(ctx, events.OrgSubject("acme"), 1); err != nil || m != nil {
		t.Fatalf("next: %+v, %v", m, err)
	}
	if seqs := subjectSeqs(t, s, events.OrgSubject("acme"), 0, 10); len(seqs) != 0 {
		t.Fatalf("read %v", seqs)
	}
}

// Appends get the stream's next sequences, and every read gives back the
// exact bytes, subject and envelope that were appended.
func testAppendAndReadBack(t *testing.T, s Store) {
	ctx := testContext(t)
	created, _, err := s.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		subject string
		env     *events.Envelope
		raw     []byte
	}
	var all []sent
	heads := map[string]uint64{}
	for i, org := range []string{"acme", "globex", "acme", "_instance", "acme"} {
		subject := events.OrgSubject(org)
		env := removed(t, org, heads[subject])
		raw, _ := env.Encode()
		seq, err := s.Append(ctx, subject, env, heads[subject])
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d on %s: seq %d, %v", i, subject, seq, err)
		}
		heads[subject] = seq
		all = append(all, sent{subject, env, raw})
	}
	for i, want := range all {
		seq := uint64(i + 1)
		m, err := s.Get(ctx, seq)
		if err != nil || m == nil {
			t.Fatalf("get %d: %+v, %v", seq, m, err)
		}
		if m.Seq != seq || m.Subject != want.subject || string(m.Raw) != string(want.raw) ||
			m.Envelope == nil || m.Envelope.ID != want.env.ID || m.Err != nil {
			t.Fatalf("get %d: %+v, want %s on %s", seq, m, want.raw, want.subject)
		}
	}
	if m, err := s.Get(ctx, 6); err != nil || m != nil {
		t.Fatalf("get past the head: %+v, %v", m, err)
	}
	newest, err := s.Newest(ctx)
	if err != nil || newest == nil || newest.Seq != 5 || string(newest.Raw) != string(all[4].raw) {
		t.Fatalf("newest %+v, %v", newest, err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.FirstSeq != 1 || info.LastSeq != 5 || !info.Created.Equal(created) {
		t.Fatalf("info %+v, %v (created %v)", info, err, created)
	}
	c2, head, err := s.Stream(ctx)
	if err != nil || head != 5 || !c2.Equal(created) {
		t.Fatalf("stream: created %v head %d, %v; want %v 5", c2, head, err, created)
	}
	for subject, want := range heads {
		if h, err := s.Head(ctx, subject); err != nil || h != want {
			t.Fatalf("head of %s: %d, %v; want %d", subject, h, err, want)
		}
	}
}

// Append stores an event only when the subject's last sequence is the
// one expected: anything else is events.ErrConflict and stores nothing.
// Subjects are independent.
func testExpectedLastSubjectSequence(t *testing.T, s Store) {
	ctx := testContext(t)
	acme, globex := events.OrgSubject("acme"), events.OrgSubject("globex")
	first, err := s.Append(ctx, acme, removed(t, "acme", 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, expected := range []uint64{0, first + 1, first + 100} {
		if _, err := s.Append(ctx, acme, removed(t, "acme", expected), expected); !errors.Is(err, events.ErrConflict) {
			t.Fatalf("expecting %d with the head at %d: %v, want a conflict", expected, first, err)
		}
	}
	if n := lastSeq(t, s); n != first {
		t.Fatalf("conflicts stored events: stream head %d, want %d", n, first)
	}
	// Another subject is not held back by acme's head.
	g, err := s.Append(ctx, globex, removed(t, "globex", 0), 0)
	if err != nil || g != first+1 {
		t.Fatalf("globex: %d, %v", g, err)
	}
	// The stream moved on, acme did not: expecting acme's head succeeds.
	second, err := s.Append(ctx, acme, removed(t, "acme", first), first)
	if err != nil || second != g+1 {
		t.Fatalf("acme after its head: %d, %v", second, err)
	}
	if _, err := s.Append(ctx, acme, removed(t, "acme", g), g); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("expecting another subject's sequence: %v, want a conflict", err)
	}
}

// Writers racing on one subject each read its head and append after it:
// every round has one winner, and the subject's events form an unbroken
// chain in which each one expected its predecessor.
func testConcurrentAppendsOneSubject(t *testing.T, s Store) {
	const writers, each = 4, 5
	ctx := testContext(t)
	subject := events.OrgSubject("acme")
	var wg sync.WaitGroup
	var conflicts sync.Map
	for w := range writers {
		wg.Go(func() {
			for range each {
				for attempt := 0; ; attempt++ {
					head, err := s.Head(ctx, subject)
					if err != nil {
						t.Errorf("writer %d: head: %v", w, err)
						return
					}
					_, err = s.Append(ctx, subject, removed(t, "acme", head), head)
					if err == nil {
						break
					}
					if !errors.Is(err, events.ErrConflict) || attempt > 1000 {
						t.Errorf("writer %d: append after %d: %v", w, head, err)
						return
					}
					conflicts.Store(w, true)
				}
			}
		})
	}
	wg.Wait()
	var prev uint64
	n := 0
	err := s.ReadSubject(ctx, subject, 0, writers*each, func(m *events.Message) error {
		if m.Envelope == nil || m.Envelope.PrevSeq != prev {
			return fmt.Errorf("seq %d: prev_seq %+v, want %d", m.Seq, m.Envelope, prev)
		}
		prev = m.Seq
		n++
		return nil
	})
	if err != nil || n != writers*each || lastSeq(t, s) != writers*each {
		t.Fatalf("%d events of %d (%v), stream head %d", n, writers*each, err, lastSeq(t, s))
	}
}

// An event id is stored once: appending the same event again (a retry
// whose first attempt landed) stores nothing more, and another event under
// an id already stored (two writers deriving the same id) is a conflict.
func testDuplicateEventID(t *testing.T, s Store) {
	ctx := testContext(t)
	subject := events.OrgSubject("acme")
	env := removed(t, "acme", 0)
	seq, err := s.Append(ctx, subject, env, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The same bytes again, after the head they moved.
	again, err := s.Append(ctx, subject, env, seq)
	if err != nil || again != seq {
		t.Fatalf("the same event again: seq %d, %v; want %d", again, err, seq)
	}
	// Other bytes under the same id.
	other, err := events.NewWithID(env.ID, events.TypeRemoved, "acme", time.Now(), actor, seq, events.Removed{LicenseID: "0193a5b0-7e1a-7c3d-8f00-00000000beef"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, subject, other, seq); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("another event under a stored id: %v, want a conflict", err)
	}
	if n := lastSeq(t, s); n != seq {
		t.Fatalf("stream head %d, want %d: a duplicate was stored", n, seq)
	}
}

// Head, Next and ReadSubject see one subject's messages only, within the
// bounds asked.
func testSubjectRanges(t *testing.T, s Store) {
	ctx := testContext(t)
	acme, globex := events.OrgSubject("acme"), events.OrgSubject("globex")
	// acme at 1, 3, 4, 7; globex at 2, 5, 6.
	var acmeSeqs, globexSeqs []uint64
	for _, org := range []string{"acme", "globex", "acme", "acme", "globex", "globex", "acme"} {
		seq := appendOn(t, s, org)
		if org == "acme" {
			acmeSeqs = append(acmeSeqs, seq)
		} else {
			globexSeqs = append(globexSeqs, seq)
		}
	}
	if seqList(acmeSeqs) != "[1 3 4 7]" || seqList(globexSeqs) != "[2 5 6]" {
		t.Fatalf("acme %v, globex %v", acmeSeqs, globexSeqs)
	}
	for _, c := range []struct {
		subject     string
		after, upTo uint64
		want        string
	}{
		{acme, 0, 7, "[1 3 4 7]"},
		{acme, 0, 100, "[1 3 4 7]"},
		{acme, 1, 6, "[3 4]"},
		{acme, 3, 3, "[]"},
		{acme, 4, 2, "[]"},
		{acme, 7, 100, "[]"},
		{globex, 2, 6, "[5 6]"},
		{globex, 0, 1, "[]"},
		{events.OrgSubject("initech"), 0, 7, "[]"},
	} {
		if got := seqList(subjectSeqs(t, s, c.subject, c.after, c.upTo)); got != c.want {
			t.Errorf("read %s (%d, %d]: %s, want %s", c.subject, c.after, c.upTo, got, c.want)
		}
	}
	for _, c := range []struct {
		subject string
		seq     uint64
		want    uint64 // 0: none
	}{
		{acme, 1, 1}, {acme, 2, 3}, {acme, 5, 7}, {acme, 7, 7}, {acme, 8, 0},
		{globex, 1, 2}, {globex, 3, 5}, {globex, 7, 0},
	} {
		m, err := s.Next(ctx, c.subject, c.seq)
		var got uint64
		if m != nil {
			got = m.Seq
			if m.Subject != c.subject {
				t.Errorf("next on %s from %d: a message on %s", c.subject, c.seq, m.Subject)
			}
		}
		if err != nil || got != c.want {
			t.Errorf("next on %s from %d: %d, %v; want %d", c.subject, c.seq, got, err, c.want)
		}
	}
	if h, err := s.Head(ctx, acme); err != nil || h != 7 {
		t.Errorf("head of acme %d, %v", h, err)
	}
	if h, err := s.Head(ctx, globex); err != nil || h != 6 {
		t.Errorf("head of globex %d, %v", h, err)
	}
}

// ReadSubject stops at the first error of fn and returns it.
func testReadSubjectStopsOnError(t *testing.T, s Store) {
	for range 3 {
		appendOn(t, s, "acme")
	}
	stop := errors.New("stop")
	var seen []uint64
	err := s.ReadSubject(testContext(t), events.OrgSubject("acme"), 0, 3, func(m *events.Message) error {
		seen = append(seen, m.Seq)
		if m.Seq == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seqList(seen) != "[1 2]" {
		t.Fatalf("read with fn failing at 2: saw %v, %v", seen, err)
	}
}

// Messages are decoded as events.Decode does: an envelope on a subject
// that does not fit it is stored (the stream checks no envelope) and read
// back as invalid, with the reason.
func testDecodesAsEvents(t *testing.T, s Store) {
	ctx := testContext(t)
	// An org event on another org's subject, and an org type on an audit
	// subject.
	misplaced := []struct{ subject, org string }{
		{events.OrgSubject("globex"), "acme"},
		{events.AuditSubject("acme"), "acme"},
	}
	for _, c := range misplaced {
		seq, err := s.Append(ctx, c.subject, removed(t, c.org, 0), 0)
		if err != nil {
			t.Fatalf("append on %s: %v", c.subject, err)
		}
		for name, read := range map[string]func() (*events.Message, error){
			"get":    func() (*events.Message, error) { return s.Get(ctx, seq) },
			"next":   func() (*events.Message, error) { return s.Next(ctx, c.subject, seq) },
			"newest": func() (*events.Message, error) { return s.Newest(ctx) },
		} {
			m, err := read()
			if err != nil || m == nil || m.Envelope != nil || m.Err == nil || m.Type() != events.TypeInvalid || m.Seq != seq {
				t.Fatalf("%s of an org event on %s: %+v, %v; want it invalid", name, c.subject, m, err)
			}
		}
	}
}

// The stream keeps licenses.org.<org> and licenses.audit.<org> only: an
// append elsewhere stores nothing and fails as unavailable (JetStream: no
// stream answers the publish, which is retried until the context ends).
func testSubjectOutsideStream(t *testing.T, s Store) {
	for _, subject := range []string{"licenses.other.acme", "licenses.org.acme.extra", "licenses.org"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		seq, err := s.Append(ctx, subject, removed(t, "acme", 0), 0)
		cancel()
		if !errors.Is(err, events.ErrUnavailable) {
			t.Fatalf("append on %s: seq %d, %v; want events.ErrUnavailable", subject, seq, err)
		}
	}
	if n := lastSeq(t, s); n != 0 {
		t.Fatalf("stream head %d after appends outside it", n)
	}
}

// A message larger than the server takes (1 MiB) is refused.
func testMaxPayload(t *testing.T, s Store) {
	ctx := testContext(t)
	big, err := events.New(events.TypeRemoved, "acme", time.Now(), actor, 0, events.Removed{LicenseID: strings.Repeat("x", 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, events.OrgSubject("acme"), big, 0); err == nil || errors.Is(err, events.ErrConflict) {
		t.Fatalf("append of %d KiB: %v, want an error", len(big.Data)>>10, err)
	}
	// Just under the limit is taken.
	fits, err := events.New(events.TypeRemoved, "acme", time.Now(), actor, 0, events.Removed{LicenseID: strings.Repeat("x", 1<<20-2048)})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := s.Append(ctx, events.OrgSubject("acme"), fits, 0); err != nil || seq != 1 {
		t.Fatalf("append of %d KiB: %d, %v", len(fits.Data)>>10, seq, err)
	}
}

// A context that has ended fails every call, and an append under it
// stores nothing.
func testCancelledContext(t *testing.T, s Store) {
	appendOn(t, s, "acme")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	subject := events.OrgSubject("acme")
	if _, err := s.Append(ctx, subject, removed(t, "acme", 1), 1); err == nil {
		t.Fatal("append with a cancelled context succeeded")
	}
	if n := lastSeq(t, s); n != 1 {
		t.Fatalf("stream head %d after an append with a cancelled context", n)
	}
	reads := map[string]func() error{
		"head":   func() error { _, err := s.Head(ctx, subject); return err },
		"next":   func() error { _, err := s.Next(ctx, subject, 1); return err },
		"get":    func() error { _, err := s.Get(ctx, 1); return err },
		"newest": func() error { _, err := s.Newest(ctx); return err },
		"info":   func() error { _, err := s.Info(ctx); return err },
		"stream": func() error { _, _, err := s.Stream(ctx); return err },
		"read": func() error {
			return s.ReadSubject(ctx, subject, 0, 1, func(*events.Message) error { return nil })
		},
	}
	for name, read := range reads {
		if err := read(); !errors.Is(err, events.ErrUnavailable) {
			t.Errorf("%s with a cancelled context: %v, want events.ErrUnavailable", name, err)
		}
	}
	delivered := false
	err := s.Consume(ctx, 1, 500*time.Millisecond, func(*events.Message) error { delivered = true; return nil }, nil)
	if err == nil || delivered {
		t.Fatalf("consume with a cancelled context: %v, delivered %v", err, delivered)
	}
}

// consumed collects what Consume delivers, until want messages came (then
// it stops Consume with errEnough) or ctx ends.
type consumed struct {
	mu   sync.Mutex
	seqs []uint64
	msgs []*events.Message
	want int
	done chan struct{}
}

var errEnough = errors.New("enough")

func consumeN(t *testing.T, s Store, start uint64, want int) (*consumed, <-chan error) {
	t.Helper()
	c := &consumed{want: want, done: make(chan struct{})}
	errc := make(chan error, 1)
	ctx := testContext(t)
	go func() {
		errc <- s.Consume(ctx, start, 500*time.Millisecond, func(m *events.Message) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.seqs = append(c.seqs, m.Seq)
			c.msgs = append(c.msgs, m)
			if len(c.seqs) == c.want {
				close(c.done)
				return errEnough
			}
			return nil
		}, nil)
	}()
	return c, errc
}

func (c *consumed) wait(t *testing.T, errc <-chan error) []uint64 {
	t.Helper()
	select {
	case err := <-errc:
		if !errors.Is(err, errEnough) {
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("consume ended with %v after %v", err, c.seqs)
		}
	case <-time.After(timeout):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("consume: %v after %s, want %d messages", c.seqs, timeout, c.want)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqs
}

// Consume delivers from the start sequence on, in order, then what is
// appended while it runs; fn's error ends it and is returned.
func testConsumeFromStart(t *testing.T, s Store) {
	var raws []string
	for i := range 5 {
		appendOn(t, s, []string{"acme", "globex"}[i%2])
	}
	for seq := uint64(1); seq <= 5; seq++ {
		m, _ := s.Get(testContext(t), seq)
		raws = append(raws, string(m.Raw))
	}
	c, errc := consumeN(t, s, 3, 5)
	appendOn(t, s, "acme")
	appendOn(t, s, "initech")
	if got := seqList(c.wait(t, errc)); got != "[3 4 5 6 7]" {
		t.Fatalf("consumed %s, want [3 4 5 6 7]", got)
	}
	for _, m := range c.msgs[:3] {
		if string(m.Raw) != raws[m.Seq-1] || m.Envelope == nil {
			t.Fatalf("consumed seq %d: %+v", m.Seq, m)
		}
	}
}

// Start 0 is the first message.
func testConsumeFromZero(t *testing.T, s Store) {
	appendOn(t, s, "acme")
	appendOn(t, s, "globex")
	c, errc := consumeN(t, s, 0, 2)
	if got := seqList(c.wait(t, errc)); got != "[1 2]" {
		t.Fatalf("consumed %s, want [1 2]", got)
	}
}

// A consumer started past the head waits for the next append.
func testConsumeWaitsForAppends(t *testing.T, s Store) {
	appendOn(t, s, "acme")
	c, errc := consumeN(t, s, 2, 1)
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	early := len(c.seqs)
	c.mu.Unlock()
	if early != 0 {
		t.Fatalf("delivered %d messages before any was appended past the start", early)
	}
	appendOn(t, s, "globex")
	if got := seqList(c.wait(t, errc)); got != "[2]" {
		t.Fatalf("consumed %s, want [2]", got)
	}
}

// Writers appending at once on several subjects: the consumer sees every
// sequence once, in order.
func testConsumeOrderUnderConcurrentAppends(t *testing.T, s Store) {
	const writers, each = 4, 15
	c, errc := consumeN(t, s, 1, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			org := fmt.Sprintf("org%d", w)
			for range each {
				appendOn(t, s, org)
			}
		})
	}
	wg.Wait()
	seqs := c.wait(t, errc)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("consumed %v: seq %d at position %d", seqs, seq, i)
		}
	}
}

// Consume returns once its context ends, with the context's error.
func testConsumeStopsWithContext(t *testing.T, s Store) {
	appendOn(t, s, "acme")
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uint64, 10)
	errc := make(chan error, 1)
	go func() {
		errc <- s.Consume(ctx, 1, 500*time.Millisecond, func(m *events.Message) error { got <- m.Seq; return nil }, nil)
	}()
	select {
	case <-got:
	case <-time.After(timeout):
		t.Fatal("nothing consumed")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("consume after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("consume still running 5 s after its context ended")
	}
}

// onIdle runs while nothing arrives, and not instead of delivering.
func testConsumeIdle(t *testing.T, s Store) {
	appendOn(t, s, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	idle := make(chan struct{}, 1)
	var mu sync.Mutex
	var seqs []uint64
	errc := make(chan error, 1)
	go func() {
		errc <- s.Consume(ctx, 1, 500*time.Millisecond, func(m *events.Message) error {
			mu.Lock()
			seqs = append(seqs, m.Seq)
			mu.Unlock()
			return nil
		}, func() {
			select {
			case idle <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("onIdle never ran on a stream with nothing new")
	}
	mu.Lock()
	got := seqList(seqs)
	mu.Unlock()
	if got != "[1]" {
		t.Fatalf("idle before delivering what the stream held: %s", got)
	}
	cancel()
	<-errc
}

// rangeSeqs lists the sequences ReadRange delivers in [from, to], checking
// each message's subject and bytes against Get's.
func rangeSeqs(t *testing.T, s Store, from, to uint64) []uint64 {
	t.Helper()
	ctx := testContext(t)
	var seqs []uint64
	err := s.ReadRange(ctx, from, to, func(subject string, seq uint64, data []byte) error {
		m, err := s.Get(ctx, seq)
		if err != nil || m == nil || m.Subject != subject || string(m.Raw) != string(data) {
			return fmt.Errorf("seq %d on %s: get gives %+v, %v", seq, subject, m, err)
		}
		seqs = append(seqs, seq)
		return nil
	})
	if err != nil {
		t.Fatalf("read [%d, %d]: %v", from, to, err)
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for seq := from; seq <= to; seq++ {
		out = append(out, seq)
	}
	return out
}

// ReadRange gives back every message of a range of sequences in order,
// with its subject and exact bytes, over more than one of the reader's
// batches, and nothing past the stream's head.
func testReadRange(t *testing.T, s Store) {
	if seqs := rangeSeqs(t, s, 1, 10); len(seqs) != 0 {
		t.Fatalf("empty stream: %v", seqs)
	}
	const n = 1100 // more than one batch of a direct get
	// The heads are kept here: a replica's answer to Head may lag.
	heads := map[string]uint64{}
	for i := range n {
		org := []string{"acme", "globex", "initech"}[i%3]
		seq, err := s.Append(testContext(t), events.OrgSubject(org), removed(t, org, heads[org]), heads[org])
		if err != nil {
			t.Fatalf("append %d on %s after %d: %v", i+1, org, heads[org], err)
		}
		heads[org] = seq
	}
	for _, c := range []struct{ from, to, wantFrom, wantTo uint64 }{
		{1, n, 1, n}, {0, 3, 1, 3}, {5, 7, 5, 7}, {1000, 1050, 1000, 1050},
		{n - 2, n + 50, n - 2, n}, {n + 1, n + 10, 1, 0}, {9, 8, 1, 0},
	} {
		if got, want := rangeSeqs(t, s, c.from, c.to), seqRange(c.wantFrom, c.wantTo); seqList(got) != seqList(want) {
			t.Fatalf("[%d, %d]: %d messages %v…, want %d", c.from, c.to, len(got), got[:min(len(got), 5)], len(want))
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.ReadRange(testContext(t), 1, n, func(string, uint64, []byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("stopped by fn: %v after %d calls", err, calls)
	}
}
