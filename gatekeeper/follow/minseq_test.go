package follow

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
)

// gate pauses a follower's consumer while closed.
type gate struct {
	mu     sync.Mutex
	paused bool
	open   chan struct{}
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		g.paused, g.open = true, make(chan struct{})
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused {
		g.paused = false
		close(g.open)
	}
}

func (g *gate) pass(*events.Message) {
	g.mu.Lock()
	ch, paused := g.open, g.paused
	g.mu.Unlock()
	if paused {
		<-ch
	}
}

// Eight replicas; each request carries the seq of the ledger's response.
// Replicas 0-3 have their consumer paused for the whole run (they must
// fold the subject themselves), 4-5 get a slow consumer, 6-7 a normal one.
// No answer may be older than the token, or miss the command's effect.
func TestMinSeqNeverOlderWithEightReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orgs := []string{"acme", "globex", "initech"}
	for _, org := range orgs {
		e.upload(t, org)
	}
	const replicas, trials = 8, 60
	fs := make([]*Follower, replicas)
	gates := make([]*gate, replicas)
	for i := range fs {
		gates[i] = &gate{}
		g := gates[i]
		slow := i == 4 || i == 5
		fs[i] = start(t, Config{Stream: e.readerBus(t), MaxStaleness: time.Minute}, true, func(f *Follower) {
			f.hookDeliver = func(m *events.Message) {
				g.pass(m)
				if slow {
					time.Sleep(time.Duration(m.Seq%7) * 3 * time.Millisecond)
				}
			}
		})
	}
	for i := range 4 {
		gates[i].pause()
	}
	t.Cleanup(func() {
		for _, g := range gates {
			g.resume()
		}
	})

	// Track every answer's seq per replica and org: never going backwards.
	var last [replicas]map[string]uint64
	for i := range last {
		last[i] = map[string]uint64{}
	}
	var older, checked atomic.Int64
	ids := map[string]string{}
	began := time.Now()
	for trial := range trials {
		org := orgs[trial%len(orgs)]
		var res uint64
		revoke := trial%5 == 4
		if revoke {
			res = e.invalidate(t, org, ids[org]).Seq
		} else {
			id, r := e.upload(t, org)
			ids[org], res = id, r.Seq
		}
		var wg sync.WaitGroup
		errs := make(chan error, replicas)
		for i, f := range fs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Generous: this checks what is answered, not how fast (the
				// whole suite shares two cores under -race).
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				own, _, err := f.State(ctx, org, res)
				checked.Add(1)
				if err != nil {
					errs <- fmt.Errorf("replica %d, %s at %d: %v", i, org, res, err)
					return
				}
				switch {
				case own.Seq < res:
					older.Add(1)
					errs <- fmt.Errorf("replica %d, %s: answered seq %d for token %d", i, org, own.Seq, res)
				case own.Current == nil || own.Current.LicenseID != ids[org] || own.IsRevoked(ids[org]) != revoke:
					errs <- fmt.Errorf("replica %d, %s at %d: the command's effect is missing", i, org, res)
				case own.Seq < last[i][org]:
					errs <- fmt.Errorf("replica %d, %s went back from %d to %d", i, org, last[i][org], own.Seq)
				}
				last[i][org] = max(last[i][org], own.Seq)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d answers in %s, %d older than the token", checked.Load(), time.Since(began).Round(time.Millisecond), older.Load())

	for i, f := range fs {
		folds := value(t, f.m.directFolds.WithLabelValues("ok"))
		delivered := value(t, f.m.minSeqWaits.WithLabelValues("delivered"))
		timeouts := value(t, f.m.minSeqWaits.WithLabelValues("timeout"))
		t.Logf("replica %d: %v delivered within the wait, %v folded directly (%v waits timed out)", i, delivered, folds, timeouts)
		if i < 4 && folds < trials {
			t.Errorf("paused replica %d folded directly %v times, want at least %d", i, folds, trials)
		}
	}

	// Resumed consumers deliver everything again: stale events never
	// take a replica back.
	for i := range 4 {
		gates[i].resume()
	}
	head := e.head(t)
	for i, f := range fs {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d caught up", i), func() bool { return f.applied.Load() >= head })
		for _, org := range orgs {
			own, _ := mustState(t, f, org, 0)
			want := e.svc.State(org)
			if own.Seq != want.Seq || projection.RowOf(own).LicenseID == nil || *projection.RowOf(own).LicenseID != ids[org] {
				t.Errorf("replica %d, %s: at %d, want %d", i, org, own.Seq, want.Seq)
			}
		}
	}
}

// A token no event reaches (a client inventing one) is unavailable, after
// the wait and a direct fold, never answered with older state.
func TestMinSeqBeyondTheSubjectIsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, res := e.upload(t, "acme")
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	began := time.Now()
	_, _, err := state(t, f, "acme", res.Seq+1000)
	if !isUnavailable(err) {
		t.Fatalf("err %v, want unavailable", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("took %s", d)
	}
	if _, _, err := state(t, f, "never-seen", 5); !isUnavailable(err) {
		t.Fatalf("unknown org with a token: err %v", err)
	}
	if own, _ := mustState(t, f, "acme", res.Seq); own.Seq != res.Seq {
		t.Fatalf("acme at %d", own.Seq)
	}
}
