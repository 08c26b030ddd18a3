package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

var base = time.Date(2026, 11, 29, 13, 0, 0, 123456000, time.UTC)

// message encodes an event of typ for org at base + minutes, on the
// subject its type belongs on.
func message(t testing.TB, seq uint64, org, typ string, actor events.Actor, minutes int) *events.Message {
	t.Helper()
	subject := events.AuditSubject(org)
	if events.IsOrgType(typ) {
		subject = events.OrgSubject(org)
	}
	env, err := events.New(typ, org, base.Add(time.Duration(minutes)*time.Minute), actor, 0,
		map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "note": fmt.Sprint("seq ", seq)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return events.Decode(subject, seq, raw)
}

var (
	operator = events.Actor{Kind: events.ActorOperator, ID: "deploy-bot"}
	admin    = events.Actor{Kind: events.ActorOrgAdmin, ID: "acme-admin"}
	system   = events.Actor{Kind: events.ActorSystem, ID: "system"}
)

// fixture is a small trail: every kind of record, two orgs, _instance,
// and two invalid messages (one not even UTF-8).
func fixture(t testing.TB) []*events.Message {
	return []*events.Message{
		message(t, 1, "_instance", events.TypeLedgerStarted, system, 0),
		message(t, 2, "acme", events.TypeUploaded, operator, 1),
		message(t, 3, "globex", events.TypeUploaded, admin, 2),
		message(t, 4, "acme", events.TypeRejected, admin, 3),
		events.Decode("licenses.org.acme", 5, []byte(`not json, "quoted", <html>`)),
		events.Decode("licenses.audit.globex", 6, []byte("\xff\xfe{\"org\":\"globex\"}")),
		message(t, 7, "acme", events.TypeRemoved, operator, 5),
		message(t, 8, "_instance", events.TypeEnforcementChanged, operator, 6),
	}
}

func memoryOf(t testing.TB, msgs []*events.Message) *audit.Memory {
	t.Helper()
	m := audit.NewMemory(audit.Messages(msgs))
	for _, msg := range msgs {
		if err := m.Append(msg, base); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func seqs(t testing.TB, r audit.Reader, q audit.Query) []uint64 {
	t.Helper()
	var out []uint64
	if err := r.Scan(context.Background(), q, func(r *audit.Record) error {
		out = append(out, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// queryCases are the filters every Reader must apply alike, with the seqs
// they select from fixture.
var queryCases = []struct {
	name string
	q    audit.Query
	want []uint64
}{
	{"all", audit.Query{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
	{"org", audit.Query{Org: "acme"}, []uint64{2, 4, 5, 7}},
	{"instance", audit.Query{Org: "_instance"}, []uint64{1, 8}},
	{"type", audit.Query{Type: events.TypeUploaded}, []uint64{2, 3}},
	{"invalid type", audit.Query{Type: events.TypeInvalid}, []uint64{5, 6}},
	{"org and type", audit.Query{Org: "globex", Type: events.TypeInvalid}, []uint64{6}},
	{"since inclusive", audit.Query{Since: base.Add(2 * time.Minute)}, []uint64{3, 4, 7, 8}},
	{"until exclusive", audit.Query{Until: base.Add(2 * time.Minute)}, []uint64{1, 2}},
	{"since and until", audit.Query{Since: base.Add(time.Minute), Until: base.Add(5 * time.Minute)}, []uint64{2, 3, 4}},
	{"after", audit.Query{After: 4}, []uint64{5, 6, 7, 8}},
	{"limit", audit.Query{Limit: 3}, []uint64{1, 2, 3}},
	{"after and limit", audit.Query{After: 2, Limit: 2, Org: "acme"}, []uint64{4, 5}},
	{"scope", audit.Query{Scope: []string{"acme"}}, []uint64{2, 4, 5, 7}},
	{"scope hides another org", audit.Query{Scope: []string{"acme"}, Org: "globex"}, nil},
	{"scope with cursor", audit.Query{Scope: []string{"globex"}, After: 3}, []uint64{6}},
	{"empty scope sees nothing", audit.Query{Scope: []string{}}, nil},
	{"scope of two", audit.Query{Scope: []string{"globex", "_instance"}, Limit: 3}, []uint64{1, 3, 6}},
	{"before", audit.Query{Before: 5}, []uint64{1, 2, 3, 4}},
	{"after and before", audit.Query{After: 2, Before: 7}, []uint64{3, 4, 5, 6}},
	{"desc", audit.Query{Desc: true}, []uint64{8, 7, 6, 5, 4, 3, 2, 1}},
	{"desc limit keeps the newest", audit.Query{Desc: true, Limit: 3}, []uint64{8, 7, 6}},
	{"desc before and limit", audit.Query{Desc: true, Before: 7, Limit: 2, Org: "acme"}, []uint64{5, 4}},
	{"desc after", audit.Query{Desc: true, After: 5, Type: events.TypeInvalid}, []uint64{6}},
	{"desc scope and time", audit.Query{Desc: true, Scope: []string{"acme"}, Until: base.Add(5 * time.Minute)}, []uint64{4, 2}},
	{"desc past the first", audit.Query{Desc: true, Before: 1}, nil},
}

func TestMemoryScanFilters(t *testing.T) {
	m := memoryOf(t, fixture(t))
	for _, c := range queryCases {
		t.Run(c.name, func(t *testing.T) {
			if got := seqs(t, m, c.q); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestMemoryHeadAndStop(t *testing.T) {
	m := audit.NewMemory(nil)
	if seq, h, err := m.Head(context.Background()); seq != 0 || h != audit.Zero || err != nil {
		t.Fatalf("empty head: %d %x %v", seq, h, err)
	}
	msgs := fixture(t)
	m = memoryOf(t, msgs)
	seq, h, _ := m.Head(context.Background())
	want := audit.Zero
	for _, msg := range msgs {
		want = audit.Next(want, msg.Seq, msg.Raw)
	}
	if seq != 8 || h != want {
		t.Fatalf("head %d %x, want 8 %x", seq, h, want)
	}
	stop := errors.New("stop")
	n := 0
	err := m.Scan(context.Background(), audit.Query{}, func(*audit.Record) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("fn's error: %v after %d records", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Scan(ctx, audit.Query{}, func(*audit.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
}

// A scan longer than a chunk sees every record once, in order, while
// appends go on; a sparse filter and a limit cross chunk boundaries.
func TestMemoryScanChunksWhileAppending(t *testing.T) {
	const n = 3000
	var msgs audit.Messages // the stream, ahead of the trail
	for seq := uint64(1); seq <= n; seq++ {
		org := []string{"acme", "globex", "initech"}[seq%3]
		msgs = append(msgs, message(t, seq, org, events.TypeRejected, admin, int(seq)))
	}
	m := audit.NewMemory(msgs)
	for _, msg := range msgs[:n/2] {
		if err := m.Append(msg, base); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, msg := range msgs[n/2:] {
			if err := m.Append(msg, base); err != nil {
				t.Error(err)
				return
			}
		}
	})
	got := seqs(t, m, audit.Query{Org: "globex"})
	wg.Wait()
	for i, s := range got {
		if s%3 != 1 || (i > 0 && s <= got[i-1]) {
			t.Fatalf("record %d: seq %d out of order or of another org", i, s)
		}
	}
	if len(got) < n/6 {
		t.Fatalf("%d records: the scan stopped early", len(got))
	}
	all := seqs(t, m, audit.Query{Org: "globex"})
	if len(all) != n/3 {
		t.Fatalf("%d globex records after the appends, want %d", len(all), n/3)
	}
	page := seqs(t, m, audit.Query{Org: "initech", After: 1000, Limit: 500})
	if len(page) != 500 || page[0] != 1001 || page[499] != 1001+3*499 {
		t.Fatalf("page: %d records, %v…%v", len(page), page[0], page[len(page)-1])
	}
	// Newest first, across chunks, from a cursor and to the trail's start.
	desc := seqs(t, m, audit.Query{Org: "initech", Desc: true, Before: 2500, Limit: 500})
	if len(desc) != 500 || desc[0] != 2498 || desc[499] != 2498-3*499 {
		t.Fatalf("descending page: %d records, %v…%v", len(desc), desc[0], desc[len(desc)-1])
	}
	rest := seqs(t, m, audit.Query{Org: "globex", Desc: true, Before: 1000})
	if len(rest) != 333 || rest[0] != 997 || rest[332] != 1 || !slices.IsSortedFunc(rest, func(a, b uint64) int { return int(b) - int(a) }) {
		t.Fatalf("descending to the start: %d records, %v…%v", len(rest), rest[0], rest[len(rest)-1])
	}
}
