package jwtorg

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// result is the outcome of a verification, as counted.
type result uint8

const (
	resultOK         result = iota // verified
	resultCached                   // answered from the cache
	resultInvalid                  // malformed, forged, mis-addressed, wrong algorithm or key
	resultExpired                  // past exp and the leeway
	resultNoClaim                  // valid, without the org claim (cached or not)
	resultUnknownKID               // names a key the JWKS does not hold
	resultCount
)

var resultNames = [resultCount]string{"ok", "cached", "invalid", "expired", "no_claim", "unknown_kid"}

// trigger is why the JWKS was read.
type trigger uint8

const (
	triggerInitial    trigger = iota // New
	triggerScheduled                 // Run, by the cache headers
	triggerReload                    // Reload
	triggerUnknownKID                // a token named a kid the set does not hold
	triggerCount
)

var triggerNames = [triggerCount]string{"initial", "scheduled", "reload", "unknown_kid"}

func (t trigger) String() string { return triggerNames[t] }

// refreshResult is the outcome of reading the JWKS.
type refreshResult uint8

const (
	refreshOK          refreshResult = iota // read (and installed if it changed)
	refreshNotModified                      // 304 to If-None-Match
	refreshError                            // failed; the previous keys stay
	refreshCount
)

var refreshNames = [refreshCount]string{"ok", "not_modified", "error"}

// Verification counters are striped by the token's hash so that cores
// verifying different tokens do not contend on one cache line.
const stripes = 8

type stripe struct {
	n [resultCount]atomic.Uint64
	_ [64]byte
}

type counters struct {
	_           [64]byte // off the cache line of the Verifier's read-mostly fields
	s           [stripes]stripe
	refreshes   [triggerCount][refreshCount]atomic.Uint64
	lastRefresh atomic.Int64 // Unix nanoseconds of the last successful read
}

func (c *counters) add(h uint64, r result) { c.s[h>>61].n[r].Add(1) } // the cache slot uses the low bits

func (c *counters) refreshed(t trigger, r refreshResult) { c.refreshes[t][r].Add(1) }

func (c *counters) verifications(r result) uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].n[r].Load()
	}
	return n
}

var (
	verificationsDesc = prometheus.NewDesc("gatekeeper_jwt_verifications_total",
		"JWT org lookups by result (ok, cached, invalid, expired, no_claim, unknown_kid).", []string{"result"}, nil)
	keysDesc = prometheus.NewDesc("gatekeeper_jwt_keys",
		"Usable signing keys in the current JWKS.", nil, nil)
	refreshesDesc = prometheus.NewDesc("gatekeeper_jwt_jwks_refreshes_total",
		"Reads of the JWKS by trigger (initial, scheduled, reload, unknown_kid) and result (ok, not_modified, error).",
		[]string{"trigger", "result"}, nil)
	lastRefreshDesc = prometheus.NewDesc("gatekeeper_jwt_jwks_last_refresh_timestamp_seconds",
		"When the JWKS was last read successfully (Unix time).", nil, nil)
	cacheEntriesDesc = prometheus.NewDesc("gatekeeper_jwt_cache_entries",
		"Verified tokens cached.", nil, nil)
	cacheBytesDesc = prometheus.NewDesc("gatekeeper_jwt_cache_bytes",
		"Bytes the cached tokens hold (with a fixed overhead per entry).", nil, nil)
)

// Collector exports the verifier's metrics (no per-org or per-token
// labels): gatekeeper_jwt_verifications_total{result},
// gatekeeper_jwt_keys, gatekeeper_jwt_jwks_refreshes_total{trigger,result},
// gatekeeper_jwt_jwks_last_refresh_timestamp_seconds,
// gatekeeper_jwt_cache_entries and gatekeeper_jwt_cache_bytes. Register
// one Verifier's collector per registry.
func (v *Verifier) Collector() prometheus.Collector { return collector{v} }

type collector struct{ v *Verifier }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{verificationsDesc, keysDesc, refreshesDesc, lastRefreshDesc,
		cacheEntriesDesc, cacheBytesDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	v := c.v
	for r := range resultCount {
		ch <- prometheus.MustNewConstMetric(verificationsDesc, prometheus.CounterValue,
			float64(v.stats.verifications(r)), resultNames[r])
	}
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(v.keys.Load().n))
	for t := range triggerCount {
		for r := range refreshCount {
			ch <- prometheus.MustNewConstMetric(refreshesDesc, prometheus.CounterValue,
				float64(v.stats.refreshes[t][r].Load()), triggerNames[t], refreshNames[r])
		}
	}
	ch <- prometheus.MustNewConstMetric(lastRefreshDesc, prometheus.GaugeValue, float64(v.stats.lastRefresh.Load())/1e9)
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(v.cache.entries.Load()))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(v.cache.bytes.Load()))
}
