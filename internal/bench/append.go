package bench

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

const appendOrgs = 1000

// appendFigure: invalidations through the command layer (cached state,
// per-org concurrency check, envelope encoding; no HTTP, no signature
// check) across 1,000 orgs, vs raw JetStream async publish of messages
// of the same size, with the store fsyncing every write and on an
// interval; and signature verification on its own.
func (r *runner) appendFigure(ctx context.Context) error {
	d := 3 * time.Second
	if r.cfg.Quick {
		d = time.Second
	}
	v, err := newVendor()
	if err != nil {
		return err
	}
	for _, mode := range []struct {
		name       string
		syncAlways bool
	}{{"sync_always", true}, {"interval", false}} {
		cmdRate, rawRate, size, err := r.appendMode(ctx, v, mode.syncAlways, d)
		if err != nil {
			return fmt.Errorf("%s: %w", mode.name, err)
		}
		ratio := cmdRate / rawRate
		r.add(fmt.Sprintf("append via command layer, %d orgs (%s)", appendOrgs, mode.name), fmtRate(cmdRate, "ev"),
			fmt.Sprintf("raw async publish of %d B %s", size, fmtRate(rawRate, "msg")), ratio, "≥ 0.5", ptr(ratio >= 0.5))
	}
	return r.verifyFigure(v)
}

func (r *runner) appendMode(ctx context.Context, v *vendor, syncAlways bool, d time.Duration) (cmdRate, rawRate float64, size int, err error) {
	ne, err := startNATS(ctx, syncAlways)
	if err != nil {
		return 0, 0, 0, err
	}
	defer ne.close()
	svc, err := newService(ctx, ne, v)
	if err != nil {
		return 0, 0, 0, err
	}
	orgs := make([]string, appendOrgs)
	for i := range orgs {
		orgs[i] = "org-" + strconv.Itoa(i)
	}
	// The size of one invalidation as stored.
	env, err := events.New(events.TypeInvalidated, orgs[0], time.Now(), operator, 1, events.Invalidated{LicenseID: uuid.NewString()})
	if err != nil {
		return 0, 0, 0, err
	}
	raw, err := env.Encode()
	if err != nil {
		return 0, 0, 0, err
	}
	size = len(raw)

	// Warm the command layer's cache: one event per org.
	if err := parallelOrgs(ctx, orgs, 64, time.Time{}, func(org string) error {
		_, err := svc.Invalidate(ctx, org, operator, uuid.NewString(), "")
		return err
	}, nil); err != nil {
		return 0, 0, 0, err
	}
	var n atomic.Int64
	start := time.Now()
	if err := parallelOrgs(ctx, orgs, 200, start.Add(d), func(org string) error {
		_, err := svc.Invalidate(ctx, org, operator, uuid.NewString(), "")
		return err
	}, &n); err != nil {
		return 0, 0, 0, err
	}
	cmdRate = float64(n.Load()) / time.Since(start).Seconds()

	rawRate, err = rawPublish(ctx, ne, orgs, size, d)
	return cmdRate, rawRate, size, err
}

// parallelOrgs runs fn over orgs from workers goroutines, each owning a
// share of the orgs, once per org when until is zero, else round and
// round until then, counting calls in n.
func parallelOrgs(ctx context.Context, orgs []string, workers int, until time.Time, fn func(string) error, n *atomic.Int64) error {
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for i := w; i < len(orgs); i += workers {
					if err := fn(orgs[i]); err != nil {
						errc <- err
						return
					}
					if n != nil {
						n.Add(1)
					}
					if !until.IsZero() && !time.Now().Before(until) || ctx.Err() != nil {
						return
					}
				}
				if until.IsZero() {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// rawPublish is JetStream async publish of size-byte messages on a stream
// of its own, over the orgs' subjects, for d; the rate counts acked
// messages.
func rawPublish(ctx context.Context, ne *natsEnv, orgs []string, size int, d time.Duration) (float64, error) {
	nc, err := ne.connect("raw")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"}, Storage: jetstream.FileStorage}); err != nil {
		return 0, err
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = 'x'
	}
	subjects := make([]string, len(orgs))
	for i, o := range orgs {
		subjects[i] = "benchraw." + o
	}
	// A window of outstanding acks, well under the client's limit: the
	// oldest is awaited before more are sent.
	const window = 2048
	futures := make([]jetstream.PubAckFuture, 0, window)
	acked := 0
	await := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			acked++
			return nil
		case err := <-f.Err():
			return err
		case <-time.After(30 * time.Second):
			return errors.New("no ack within 30 s")
		}
	}
	start := time.Now()
	deadline := start.Add(d)
	for sent := 0; ; sent++ {
		if sent%256 == 0 && !time.Now().Before(deadline) {
			break
		}
		if len(futures) == window {
			if err := await(futures[0]); err != nil {
				return 0, err
			}
			futures = futures[1:]
			if cap(futures)-len(futures) == 0 {
				futures = append(make([]jetstream.PubAckFuture, 0, window), futures...)
			}
		}
		f, err := js.PublishAsync(subjects[sent%len(subjects)], data)
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		if err := await(f); err != nil {
			return 0, err
		}
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	elapsed := time.Since(start)
	return float64(acked) / elapsed.Seconds(), nil
}

// verifyFigure: verifying a license against the key ring (decode, payload
// rules, Ed25519), beside ed25519.Verify alone.
func (r *runner) verifyFigure(v *vendor) error {
	lic, err := v.sign(benchOrg)
	if err != nil {
		return err
	}
	ring := v.keys.Ring()
	body := []byte(lic.Key)
	if _, err := ring.Verify(body, license.Expect{Org: benchOrg}); err != nil {
		return err
	}
	full := measure(r.benchTime(), func() { ring.Verify(body, license.Expect{Org: benchOrg}) })
	pub, _ := ring.Key(kid)
	signed, sig := lic.SignedBytes(), lic.Signature()
	bare := measure(r.benchTime(), func() { ed25519.Verify(pub, signed, sig) })
	ns, refNs := full.nsPerOp(), bare.nsPerOp()
	r.add("license verification (ns/op, allocs/op)", fmt.Sprintf("%.1f µs, %d allocs", ns/1e3, full.allocsPerOp()),
		fmt.Sprintf("ed25519.Verify %.1f µs", refNs/1e3), ns/refNs, "", nil)
	return nil
}
