package main

import (
	"encoding/json"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licenseledger/ledger/gatekeeper/follow"
)

// adminHandler serves /healthz, /readyz and /metrics. /readyz is 200 once
// the initial state is loaded and the serving listeners (/authz, the
// proxy) accept connections (serving), whatever the staleness (reported in
// the body), so a NATS outage never takes every replica out of rotation.
func adminHandler(reg *prometheus.Registry, fol *follow.Follower, serving *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := fol.Health()
		code := http.StatusOK
		if !h.Loaded || !serving.Load() {
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
