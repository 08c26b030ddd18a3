package ledger

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the command layer's Prometheus metrics. No metric has a
// per-org label: org counts are unbounded.
type Metrics struct {
	Commands       *prometheus.CounterVec
	Appended       *prometheus.CounterVec
	Conflicts      prometheus.Counter
	FoldSkipped    *prometheus.CounterVec
	CatchUps       prometheus.Counter
	RejectsDropped prometheus.Counter
	// UsageLimited counts usage reports refused by LEDGER_USAGE_RATE.
	UsageLimited prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_commands_total", Help: "License commands by command and result (ok, noop, or the error code).",
		}, []string{"command", "result"}),
		Appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_events_appended_total", Help: "Events appended to the stream by type.",
		}, []string{"type"}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_append_conflicts_total", Help: "Appends refused because the subject moved on (retried after reloading the org).",
		}),
		FoldSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_fold_skipped_total", Help: "Org-subject messages skipped for state, by outcome (invalid, too_new).",
		}, []string{"outcome"}),
		CatchUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_catchups_total", Help: "Reads that folded an org's subject directly because the consumer had not delivered its head yet.",
		}),
		RejectsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_rejections_suppressed_total", Help: "license.rejected events not appended because of LEDGER_REJECT_AUDIT_RATE (summarised by license.rejected_suppressed).",
		}),
		UsageLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledger_usage_reports_limited_total", Help: "Usage reports refused (429 rate_limited) because the org's users changed more often than LEDGER_USAGE_RATE allows.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Commands, m.Appended, m.Conflicts, m.FoldSkipped, m.CatchUps, m.RejectsDropped, m.UsageLimited)
	}
	return m
}
