package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/gatekeeper/follow"
)

// fleets are the propagation figure's replica counts: the design's 8, and
// 64 for replicas at scale.
var fleets = []int{8, 64}

// applied is a replica's report: org's state reached seq at.
type applied struct {
	seq uint64
	at  time.Time
}

// propagationOrg is the org whose invalidations the figure times.
const propagationOrg = "propagation"

// propagationFigure: from the ledger's response to the apply at each of
// 8, then 64, replicas, beside JetStream's own publish ack → delivery at
// as many ordered consumers in the same run. Each fleet runs on a server
// of its own, the previous one stopped.
//
// The larger fleet is also measured with the garbage collector paced as
// that many processes would pace theirs: in one process the followers
// share one heap and its 4 MiB minimum, so its collections (a third of
// the run's CPU) stop all of them at once, where separate replicas, each
// with its own minimum, collect apart. That row is informational; the
// target stays on the figure as run.
func (r *runner) propagationFigure(ctx context.Context) error {
	for _, n := range fleets {
		variants := []bool{false}
		if n > 8 && !r.cfg.Quick {
			variants = append(variants, true)
		}
		for _, fleetGC := range variants {
			restore := 0
			if fleetGC {
				restore = debug.SetGCPercent(100 * n) // n processes: n minimum heaps, not one
			}
			sub := &runner{cfg: r.cfg, log: r.log, fleetGC: fleetGC}
			err := sub.propagation(ctx, n)
			sub.close()
			if fleetGC {
				debug.SetGCPercent(restore)
			}
			r.rows = append(r.rows, sub.rows...)
			if err != nil {
				return fmt.Errorf("%d replicas: %w", n, err)
			}
		}
	}
	return nil
}

// propagationTrials is how many invalidations each fleet times.
func (r *runner) propagationTrials(replicas int) int {
	switch {
	case r.cfg.Quick && replicas > 8:
		return 100
	case r.cfg.Quick:
		return 200
	}
	return 300
}

// propagation times trials invalidations applied at replicas followers.
// They run in this process: as processes of their own (one bench replica
// each) 64 followers were measured no closer to the floor on 2 cores,
// their p50 several times further.
func (r *runner) propagation(ctx context.Context, replicas int) error {
	trials := r.propagationTrials(replicas)
	v, err := newVendor()
	if err != nil {
		return err
	}
	ne, err := startNATS(ctx, true)
	if err != nil {
		return err
	}
	r.defer_(ne.close)
	svc, err := newService(ctx, ne, v)
	if err != nil {
		return err
	}
	if _, err := upload(ctx, svc, v, propagationOrg); err != nil {
		return err
	}
	chans, err := r.replicaFollowers(ctx, ne, v, replicas, 4*trials)
	if err != nil {
		return err
	}
	lags := make([]time.Duration, 0, trials*replicas)
	negative := 0
	for range trials {
		res, err := svc.Invalidate(ctx, propagationOrg, operator, uuid.NewString(), "")
		if err != nil {
			return err
		}
		responded := time.Now()
		for _, ch := range chans {
			if err := awaitApplied(ctx, ch, res.Seq, func(a applied) {
				d := a.at.Sub(responded)
				if d < 0 {
					negative++
					d = 0
				}
				lags = append(lags, d)
			}); err != nil {
				return err
			}
		}
	}
	floor, floorNeg, err := r.floor(ctx, ne, replicas, trials)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	slices.Sort(lags)
	slices.Sort(floor)
	p50, p99 := quantile(lags, 0.5), quantile(lags, 0.99)
	f50, f99 := quantile(floor, 0.5), quantile(floor, 0.99)
	note := ""
	if replicas > runtime.NumCPU() {
		note = fmt.Sprintf("%d followers and the server in one process on %d cores: the figure includes their scheduling", replicas, runtime.NumCPU())
	}
	if r.fleetGC {
		r.add(fmt.Sprintf("propagation p99, %d replicas, GC paced as %d processes", replicas, replicas), fmtDur(p99),
			fmt.Sprintf("JetStream ack→delivery p99 %s (%d consumers)", fmtDur(f99), replicas), float64(p99)/float64(max(f99, 1)), "", nil)
		r.rows[len(r.rows)-1].Note = fmt.Sprintf("GOGC %d in this process for this row: %d replicas' minimum heaps, as separate processes collect", 100*replicas, replicas)
		r.add(fmt.Sprintf("propagation p50, %d replicas, GC paced as %d processes", replicas, replicas), fmtDur(p50),
			fmt.Sprintf("JetStream ack→delivery p50 %s", fmtDur(f50)), float64(p50)/float64(max(f50, 1)), "", nil)
		return nil
	}
	r.add(fmt.Sprintf("propagation p99, %d replicas × %d trials", replicas, trials), fmtDur(p99),
		fmt.Sprintf("JetStream ack→delivery p99 %s (%d consumers)", fmtDur(f99), replicas), float64(p99)/float64(max(f99, 1)), "< 2 ms", ptr(p99 < 2*time.Millisecond))
	r.rows[len(r.rows)-1].Note = note
	r.add(fmt.Sprintf("propagation p50, %d replicas", replicas), fmtDur(p50), fmt.Sprintf("JetStream ack→delivery p50 %s", fmtDur(f50)), float64(p50)/float64(max(f50, 1)), "", nil)
	r.add(fmt.Sprintf("propagation negatives counted as 0, %d replicas", replicas), fmt.Sprintf("%d of %d", negative, len(lags)), fmt.Sprintf("floor %d of %d", floorNeg, len(floor)), -1, "", nil)
	return nil
}

// replicaFollowers runs replicas followers in this process, each on a
// connection of its own, and returns the channels their applies of
// propagationOrg arrive on.
func (r *runner) replicaFollowers(ctx context.Context, ne *natsEnv, v *vendor, replicas, buf int) ([]chan applied, error) {
	chans := make([]chan applied, replicas)
	for i := range replicas {
		bus, closeBus, err := ne.readerBus(ctx, "replica-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		r.defer_(closeBus)
		ch := make(chan applied, buf)
		chans[i] = ch
		var f *follow.Follower
		var ready sync.WaitGroup
		ready.Add(1)
		// OnChange runs after the replica replaced the state, on the
		// follower's notification goroutine: the time taken there is when
		// a decision could first use the new state, or a little later.
		f, err = r.follower(ctx, follow.Config{Stream: bus, Keys: v.keys, OnChange: func(o string) {
			ready.Wait()
			if o != propagationOrg {
				return
			}
			at := time.Now()
			if own, _, ok := f.CachedState(propagationOrg, 0); ok {
				ch <- applied{own.Seq, at}
			}
		}})
		ready.Done()
		if err != nil {
			return nil, err
		}
	}
	return chans, nil
}

func awaitApplied(ctx context.Context, ch <-chan applied, seq uint64, fn func(applied)) error {
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case a := <-ch:
			if a.seq >= seq {
				fn(a)
				return nil
			}
		case <-timeout.C:
			return fmt.Errorf("a replica never applied seq %d", seq)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// floor publishes on a stream of its own and times publish ack →
// delivery at consumers ordered consumers, each on its own connection.
func (r *runner) floor(ctx context.Context, ne *natsEnv, consumers, trials int) ([]time.Duration, int, error) {
	js, err := jetstream.New(ne.nc)
	if err != nil {
		return nil, 0, err
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCHFLOOR", Subjects: []string{"benchfloor.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, 0, err
	}
	chans := make([]chan applied, consumers)
	for i := range consumers {
		nc, err := ne.connect("floor-" + strconv.Itoa(i))
		if err != nil {
			return nil, 0, err
		}
		r.defer_(nc.Close)
		cjs, err := jetstream.New(nc)
		if err != nil {
			return nil, 0, err
		}
		cs, err := cjs.Stream(ctx, s.CachedInfo().Config.Name)
		if err != nil {
			return nil, 0, err
		}
		cons, err := cs.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			return nil, 0, err
		}
		ch := make(chan applied, 4*trials)
		chans[i] = ch
		cc, err := cons.Consume(func(m jetstream.Msg) {
			at := time.Now()
			if md, err := m.Metadata(); err == nil {
				ch <- applied{md.Sequence.Stream, at}
			}
		}, jetstream.PullHeartbeat(time.Second))
		if err != nil {
			return nil, 0, err
		}
		r.defer_(cc.Stop)
	}
	time.Sleep(100 * time.Millisecond) // consumers' first pulls
	payload := make([]byte, 400)
	var lags []time.Duration
	negative := 0
	for range trials {
		ack, err := js.Publish(ctx, "benchfloor.x", payload)
		if err != nil {
			return nil, 0, err
		}
		acked := time.Now()
		for _, ch := range chans {
			if err := awaitApplied(ctx, ch, ack.Sequence, func(a applied) {
				d := a.at.Sub(acked)
				if d < 0 {
					negative++
					d = 0
				}
				lags = append(lags, d)
			}); err != nil {
				return nil, 0, err
			}
		}
	}
	if len(lags) == 0 {
		return nil, 0, errors.New("nothing delivered")
	}
	return lags, negative, nil
}
