package main

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/gatestate"
)

// adminHandler serves /healthz, /readyz and /metrics. /readyz is 200 once
// the initial state is loaded, whatever the staleness (reported in the
// body), so a NATS outage never takes every replica out of rotation.
func adminHandler(reg *prometheus.Registry, fol *gatestate.Follower) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := fol.Health()
		code := http.StatusOK
		if !h.Loaded {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// registerMetrics exports the gate's decision counters (by result and
// code; no per-org labels) and the enforcement override.
func registerMetrics(reg *prometheus.Registry, gate *gatekeeper.Gate, enforce *bool) {
	reg.MustRegister(decisionCollector{gate})
	override := prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatekeeper_enforce_override",
		Help: "LICENSE_ENFORCE: -1 not set, 0 forced off, 1 forced on."})
	switch {
	case enforce == nil:
		override.Set(-1)
	case *enforce:
		override.Set(1)
	default:
		override.Set(0)
	}
	reg.MustRegister(override)
}

var decisionsDesc = prometheus.NewDesc("gatekeeper_decisions_total",
	"Decisions by result (allowed, allowlisted, unenforced, denied) and denial code.", []string{"result", "code"}, nil)

// decisionCollector reads the gate's counters at scrape time.
type decisionCollector struct{ gate *gatekeeper.Gate }

func (c decisionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- decisionsDesc }

func (c decisionCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.gate.Stats()
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Allowed), gatekeeper.ResultAllowed, "")
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Allowlisted), gatekeeper.ResultAllowlisted, "")
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Unenforced), gatekeeper.ResultUnenforced, "")
	for code, n := range s.Denied {
		ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(n), gatekeeper.ResultDenied, code)
	}
}
