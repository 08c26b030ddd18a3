package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsbus"
)

// streamMonitor compares the stream's configuration with the contract's
// (at start, then every --stream-check-interval). A difference — a limit
// that makes JetStream drop history, a protection off, fewer replicas — is
// logged field by field when it appears or changes, exported as metrics,
// makes /readyz fail, and is recorded once per change as a
// ledger.stream_config_drift event on licenses.audit._instance.
type streamMonitor struct {
	bus      *natsbus.Bus
	svc      *ledger.Service
	stream   string
	replicas int
	log      *slog.Logger
	drift    prometheus.Gauge
	fields   *prometheus.GaugeVec
	checks   prometheus.Counter

	mu      sync.Mutex
	current []events.ConfigField
	checked bool
}

func newStreamMonitor(bus *natsbus.Bus, svc *ledger.Service, stream string, replicas int, reg prometheus.Registerer, log *slog.Logger) *streamMonitor {
	m := &streamMonitor{bus: bus, svc: svc, stream: stream, replicas: replicas, log: log,
		drift: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_stream_config_drift",
			Help: "1 while the stream's configuration differs from the contract's (see ledger_stream_config_drift_fields), else 0."}),
		fields: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_stream_config_drift_fields",
			Help: "1 for each setting of the stream that differs from the contract's (max_age, deny_purge, num_replicas…)."}, []string{"field"}),
		checks: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_stream_config_checks_total",
			Help: "Comparisons of the stream's configuration with the contract's that read it (--stream-check-interval)."}),
	}
	reg.MustRegister(m.drift, m.fields, m.checks)
	return m
}

// check reads the stream's configuration once. A failed read changes
// nothing: NATS readiness reports it.
func (m *streamMonitor) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fields, err := m.bus.Drift(cctx, m.replicas)
	if err != nil {
		m.log.Debug("stream configuration not checked", "stream", m.stream, "err", err)
		return
	}
	m.mu.Lock()
	changed := !slices.Equal(fields, m.current) || (!m.checked && len(fields) > 0)
	m.current, m.checked = fields, true
	m.mu.Unlock()

	m.fields.Reset()
	for _, f := range fields {
		m.fields.WithLabelValues(f.Field).Set(1)
	}
	if len(fields) > 0 {
		m.drift.Set(1)
	} else {
		m.drift.Set(0)
	}
	if changed {
		m.logChange(fields)
	}
	if _, err := m.svc.RecordStreamDrift(cctx, m.stream, fields); err != nil {
		m.log.Error("stream configuration drift not recorded on the audit trail; retrying at the next check", "stream", m.stream, "err", err)
	}
	m.checks.Inc()
}

func (m *streamMonitor) logChange(fields []events.ConfigField) {
	if len(fields) == 0 {
		m.log.Info("stream configuration matches the contract again", "stream", m.stream)
		return
	}
	for _, f := range fields {
		m.log.Error("stream configuration differs from the contract", "stream", m.stream,
			"field", f.Field, "expected", f.Expected, "actual", f.Actual, "fix", applyHint)
	}
}

// applyHint says how to restore the contract's configuration.
const applyHint = "ledger stream apply, with the stream administrator's credentials"

// readiness is the /readyz stream field, and whether the stream drifts.
func (m *streamMonitor) readiness() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.checked {
		return "unchecked", false
	}
	if len(m.current) == 0 {
		return "ok", false
	}
	parts := make([]string, len(m.current))
	for i, f := range m.current {
		parts[i] = f.String()
	}
	return "configuration differs from the contract: " + strings.Join(parts, "; ") + "; restore it with " + applyHint, true
}
