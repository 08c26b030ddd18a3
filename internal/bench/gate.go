package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/gatekeeper/frontend"
	"github.com/licenseledger/ledger/internal/events"
)

// benchOrg holds a valid license; enforcement is on.
const benchOrg = "acme"

// featureRules are a typical --features file.
const featureRules = `POST /api/chat/{channel}/bots chat_connector
/api/projects/{id}/export export
/api/sso/ sso
`

// gateEnv is a ledger with one licensed org and a gatekeeper replica
// following it: the Gate the decision, /authz and proxy figures measure.
type gateEnv struct {
	nats *natsEnv
	fol  *follow.Follower
	gate *gatekeeper.Gate
}

func (r *runner) gateEnv(ctx context.Context) (*gateEnv, error) {
	v, err := newVendor()
	if err != nil {
		return nil, err
	}
	ne, err := startNATS(ctx, true)
	if err != nil {
		return nil, err
	}
	r.defer_(ne.close)
	svc, err := newService(ctx, ne, v)
	if err != nil {
		return nil, err
	}
	res, err := upload(ctx, svc, v, benchOrg)
	if err != nil {
		return nil, err
	}
	if _, err := svc.SetEnforcement(ctx, operator, events.EnforceOn); err != nil {
		return nil, err
	}
	bus, closeBus, err := ne.readerBus(ctx, "gatekeeper")
	if err != nil {
		return nil, err
	}
	r.defer_(closeBus)
	fol, err := r.follower(ctx, follow.Config{Stream: bus, Keys: v.keys})
	if err != nil {
		return nil, err
	}
	if err := waitSeq(ctx, fol, benchOrg, res.Seq); err != nil {
		return nil, err
	}
	ge := &gateEnv{nats: ne, fol: fol}
	rules, err := ge.rules()
	if err != nil {
		return nil, err
	}
	if ge.gate, err = gatekeeper.New(fol, gatekeeper.Config{Features: rules}); err != nil {
		return nil, err
	}
	return ge, nil
}

// rules are the feature rules every bench gate runs with.
func (ge *gateEnv) rules() ([]gatekeeper.FeatureRule, error) {
	return gatekeeper.ParseFeatures(strings.NewReader(featureRules))
}

// follower runs a follower until the run ends and waits for its
// initial load.
func (r *runner) follower(ctx context.Context, cfg follow.Config) (*follow.Follower, error) {
	cfg.Logger = r.log
	f, err := follow.New(cfg)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(fctx); close(done) }()
	r.defer_(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if err := f.Wait(wctx); err != nil {
		return nil, fmt.Errorf("gatekeeper replica did not load: %w", err)
	}
	return f, nil
}

// waitSeq waits until f holds org at seq or later.
func waitSeq(ctx context.Context, f *follow.Follower, org string, seq uint64) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if own, _, ok := f.CachedState(org, 0); ok && own.Seq >= seq {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("replica never applied %s at %d", org, seq)
}

// decisionFigure: a decision on a cached entry with pre-rendered headers
// (Gate.Decide on the real follower), beside one time.Now; and the same
// decision in jwt mode, with a token verified before (a cache lookup,
// not a signature check), beside the header-mode decision.
func (r *runner) decisionFigure(ctx context.Context) error {
	ge, err := r.gateEnv(ctx)
	if err != nil {
		return err
	}
	jg, bearer, err := r.jwtGate(ctx, ge)
	if err != nil {
		return err
	}
	req, err := inboundRequest("/api/projects/42")
	if err != nil {
		return err
	}
	req.RemoteAddr = "127.0.0.1:53412"
	req.Header.Set("X-Org-Slug", benchOrg)
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	jreq := req.Clone(ctx)
	jreq.Header.Del("X-Org-Slug")
	jreq.Header.Set("Authorization", bearer)
	if d := ge.gate.Decide(req); !d.Allowed {
		return fmt.Errorf("benchmark request denied: %s", d.Code)
	}
	if d := jg.Decide(jreq); !d.Allowed || d.Org != benchOrg {
		return fmt.Errorf("jwt benchmark request denied: %s", d.Code)
	}
	// The machine may be shared: each side keeps its fastest of a few
	// runs, the one least disturbed by other processes.
	var sink int64
	ns, jwtNs, refNs := math.Inf(1), math.Inf(1), math.Inf(1)
	var allocs, jwtAllocs int64
	for range r.benchRuns() {
		dec := measure(r.benchTime(), func() { ge.gate.Decide(req) })
		jdec := measure(r.benchTime(), func() { jg.Decide(jreq) })
		ref := measure(r.benchTime(), func() { sink += time.Now().UnixNano() })
		ns, jwtNs, refNs = min(ns, dec.nsPerOp()), min(jwtNs, jdec.nsPerOp()), min(refNs, ref.nsPerOp())
		allocs, jwtAllocs = max(allocs, dec.allocsPerOp()), max(jwtAllocs, jdec.allocsPerOp())
	}
	_ = sink
	r.add("decision, cached entry (ns/op)", fmt.Sprintf("%.1f ns", ns), fmt.Sprintf("time.Now %.1f ns", refNs), ns/refNs,
		"< 100 ns", ptr(ns < 100))
	r.add("decision, cached entry (allocs/op)", fmt.Sprintf("%d", allocs), "", -1, "0", ptr(allocs == 0))
	r.add("decision, jwt mode, cached token (ns/op)", fmt.Sprintf("%.1f ns", jwtNs), fmt.Sprintf("header mode %.1f ns", ns), jwtNs/ns,
		"≤ 2×", ptr(jwtNs <= 2*ns))
	r.add("decision, jwt mode, cached token (allocs/op)", fmt.Sprintf("%d", jwtAllocs), "", -1, "0", ptr(jwtAllocs == 0))
	return nil
}

// benchRuns is how many times each timed operation runs (the fastest
// counts).
func (r *runner) benchRuns() int {
	if r.cfg.Quick {
		return 2
	}
	return 5
}

// workers is the load generator's concurrency.
func (r *runner) workers() int { return 16 }

// loadTime is one load round; rounds how many per target.
func (r *runner) loadTime() time.Duration {
	if r.cfg.Quick {
		return 700 * time.Millisecond
	}
	return 2 * time.Second
}

func (r *runner) rounds() int {
	if r.cfg.Quick {
		return 2
	}
	return 3
}

// ok200 is the bare handler.
var ok200 = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// authzFigure: /authz under load vs a bare handler returning 200.
func (r *runner) authzFigure(ctx context.Context) error {
	ge, err := r.gateEnv(ctx)
	if err != nil {
		return err
	}
	bare, err := r.serve(ok200)
	if err != nil {
		return err
	}
	authz, err := r.serve(frontend.Authz(ge.gate, "original"))
	if err != nil {
		return err
	}
	hdr := http.Header{"X-Org-Slug": {benchOrg}, "X-Original-Method": {"GET"}, "X-Original-Uri": {"/api/projects/42?page=2"}}
	res, err := compare(ctx, hdr, r.workers(), r.rounds(), r.loadTime(), bare+"/authz", authz+"/authz")
	if err != nil {
		return err
	}
	ref, val := res[0], res[1]
	ratio := val.rate() / ref.rate()
	r.add(fmt.Sprintf("/authz throughput (%d workers)", r.workers()), fmtRate(val.rate(), "req"), "bare handler "+fmtRate(ref.rate(), "req"),
		ratio, "≥ 0.8", ptr(ratio >= 0.8))
	r.add("/authz p99 latency", fmtDur(val.p99), "bare handler "+fmtDur(ref.p99), float64(val.p99)/float64(ref.p99), "", nil)
	return nil
}

// proxyFigure: the gatekeeper's reverse proxy vs a plain
// httputil.ReverseProxy in front of the same upstream, and vs direct.
func (r *runner) proxyFigure(ctx context.Context) error {
	ge, err := r.gateEnv(ctx)
	if err != nil {
		return err
	}
	upstream, err := r.serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	}))
	if err != nil {
		return err
	}
	u, _ := url.Parse(upstream)
	plainRP := httputil.NewSingleHostReverseProxy(u)
	plainRP.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	plain, err := r.serve(plainRP)
	if err != nil {
		return err
	}
	gp := frontend.NewProxy(ge.gate, u, r.log)
	gated, err := r.serve(gp)
	if err != nil {
		return err
	}
	jg, bearer, err := r.jwtGate(ctx, ge)
	if err != nil {
		return err
	}
	jwtGated, err := r.serve(frontend.NewProxy(jg, u, r.log))
	if err != nil {
		return err
	}
	// Every target gets both the org header and the token: header mode
	// reads one, jwt mode the other, the plain proxy and the upstream
	// neither.
	hdr := http.Header{"X-Org-Slug": {benchOrg}, "Authorization": {bearer}}
	const path = "/api/projects/42"
	res, err := compare(ctx, hdr, r.workers(), r.rounds(), r.loadTime(), upstream+path, plain+path, gated+path, jwtGated+path)
	if err != nil {
		return err
	}
	direct, ref, val, jwt := res[0], res[1], res[2], res[3]
	ratio := val.rate() / ref.rate()
	r.add(fmt.Sprintf("proxy throughput (%d workers)", r.workers()), fmtRate(val.rate(), "req"), "plain ReverseProxy "+fmtRate(ref.rate(), "req"),
		ratio, "≥ 0.9", ptr(ratio >= 0.9))
	r.add("proxy p99 added over plain proxy", fmtDur(val.p99-ref.p99), fmt.Sprintf("p99 %s vs %s", fmtDur(val.p99), fmtDur(ref.p99)), -1, "", nil)
	r.add("plain proxy hop vs direct", fmtRate(ref.rate(), "req"), "direct "+fmtRate(direct.rate(), "req"), ref.rate()/direct.rate(), "", nil)
	jratio := jwt.rate() / val.rate()
	r.add(fmt.Sprintf("proxy throughput, jwt mode (%d workers)", r.workers()), fmtRate(jwt.rate(), "req"), "header mode "+fmtRate(val.rate(), "req"),
		jratio, "≥ 0.9", ptr(jratio >= 0.9))
	return nil
}
