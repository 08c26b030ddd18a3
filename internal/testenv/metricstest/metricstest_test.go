package metricstest

import (
	"slices"
	"testing"
)

func TestUnitless(t *testing.T) {
	exp := []byte(`# HELP ledger_projector_lag Stream head minus the folded sequence.
# TYPE ledger_projector_lag gauge
ledger_projector_lag 0
# HELP ledger_projector_lag_events In events.
# TYPE ledger_projector_lag_events gauge
ledger_projector_lag_events 0
# HELP ledger_old_lag Deprecated: ledger_old_lag_events.
# HELP gatekeeper_apply_lag_seconds Seconds.
# HELP gatekeeper_staleness Since the last check.
# HELP ledger_audit_checkpoint_signed_timestamp_seconds When.
# HELP go_gc_duration_seconds Not ours.
# HELP process_start_time Not ours either.
# HELP ledger_orgs Orgs by status.
`)
	if got, want := Unitless(exp), []string{"ledger_projector_lag", "gatekeeper_staleness"}; !slices.Equal(got, want) {
		t.Fatalf("Unitless = %v, want %v", got, want)
	}
}
