package follow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/keyringmetric"
)

// metrics are the follower's Prometheus metrics; none has a per-org label.
type metrics struct {
	loads         *prometheus.CounterVec
	events        *prometheus.CounterVec
	applyLag      prometheus.Histogram
	minSeqWaits   *prometheus.CounterVec
	directFolds   *prometheus.CounterVec
	staleReloads  *prometheus.CounterVec
	verifications *prometheus.CounterVec
}

func newMetrics(f *Follower, reg prometheus.Registerer) *metrics {
	m := &metrics{
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_deferred_verifications_total",
			Help: "Licenses a load of every org left unverified, verified since: in the background (every core) or at a request for the org."},
			[]string{"when"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_state_loads_total",
			Help: "State loads: scope initial (every org, at start) or org (one org on demand), from PostgreSQL or the stream."},
			[]string{"source", "scope"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_events_applied_total",
			Help: "Org events consumed from the stream and folded, by outcome (applied, ignored, invalid, too_new)."},
			[]string{"outcome"}),
		applyLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatekeeper_apply_lag_seconds",
			Help:    "From an event's time (at) to its application in this replica.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		minSeqWaits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_min_seq_waits_total",
			Help: "Requests whose consistency token was ahead of the cache: delivered by the consumer within the wait, or timeout (then folded directly)."},
			[]string{"result"}),
		directFolds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_direct_folds_total",
			Help: "Folds of one org's subject read directly from the stream for a consistency token."},
			[]string{"result"}),
		staleReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatekeeper_stale_reloads_total",
			Help: "Per-request PostgreSQL reloads while stale: newer (row used), kept (cache kept: row not newer), error, skipped (PostgreSQL failed recently)."},
			[]string{"result"}),
	}
	for _, s := range []string{"postgres", "stream"} {
		for _, k := range []string{"initial", "org"} {
			m.loads.WithLabelValues(s, k)
		}
	}
	for _, r := range []string{"delivered", "timeout"} {
		m.minSeqWaits.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.directFolds.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	reg.MustRegister(m.loads, m.events, m.applyLag, m.minSeqWaits, m.directFolds, m.staleReloads, m.verifications,
		gauge("gatekeeper_orgs_unverified", "Cached orgs whose license key is not verified yet (after a load; verified before any decision on them).",
			func() float64 { return float64(f.UnverifiedOrgs()) }),
		gauge("gatekeeper_orgs_cached", "Orgs whose state is cached (every org with an event, and _instance).",
			func() float64 { return float64(f.orgs.Load().len()) }),
		gauge("gatekeeper_staleness_seconds", "Time since this replica last confirmed it had applied the whole stream.",
			func() float64 { return f.Staleness().Seconds() }),
		gauge("gatekeeper_state_loaded", "1 once the initial state is loaded.",
			func() float64 { return b2f(f.loaded.Load()) }),
		gauge("gatekeeper_stream_applied_seq", "Last stream sequence applied.",
			func() float64 { return float64(f.applied.Load()) }),
		gauge("gatekeeper_stream_head_seq", "Stream head at the last successful check.",
			func() float64 { return float64(f.tail.Head()) }),
		keyringmetric.Collector(f.cfg.Keys), // license_keyring_info: the ring this follower verifies with
		gauge("gatekeeper_orgs_unknown_key", "Orgs whose current or pending license is signed by a key (kid) this replica's key ring does not hold: denied license_invalid (unknown_key).",
			func() float64 { return float64(f.UnknownKeyOrgs()) }),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
