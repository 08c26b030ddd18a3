package bench

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

func TestContainerLimit(t *testing.T) {
	for _, c := range []struct {
		orgs int
		want int64
	}{
		{0, 64 << 20},
		{100_000, 150 << 20},
		{1_000_000, 1536 << 20},
	} {
		if got := containerLimit(c.orgs); got != c.want {
			t.Errorf("containerLimit(%d) = %d, want %d", c.orgs, got, c.want)
		}
	}
	if a, b := containerLimit(10_000), containerLimit(20_000); !(64<<20 < a && a < b && b < 150<<20) {
		t.Errorf("containerLimit grows from 64 MiB to 150 MiB: %d, %d", a, b)
	}
}

// A replica process (the gatekeeper binary) started on 20,000 licensed
// orgs inside a memory cgroup limited as a container would be (where the
// test may create one; else with the GOMEMLIMIT the replica would derive):
// it sets its Go memory limit from the container's, becomes ready, allows
// every licensed org it is asked about, and is never killed, its peak
// within the limit.
func TestReplicaUnderContainerMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replica on 20,000 orgs")
	}
	const orgs = 20_000
	ctx := context.Background()
	bins := proctest.Build(t, t.TempDir(), proctest.Ledger, proctest.Gatekeeper)
	v, ne, _, err := enforcingInstall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ne.close()
	if err := fillStream(ctx, ne, v, orgs, orgs); err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{Executable: bins["ledger"], Gatekeeper: bins["gatekeeper"], Quick: true, Progress: io.Discard}, log: slog.New(slog.DiscardHandler)}
	defer r.close()
	free, err := r.replicaProcess(ctx, ne, v, orgs, replicaOpts{variant: "stream"})
	if err != nil {
		t.Fatalf("replica without a limit: %v", err)
	}
	if free.memLimit != 0 && free.memLimit < 1<<40 {
		t.Errorf("without a container limit the replica set a Go memory limit of %d", free.memLimit)
	}
	if err := r.limitedStart(ctx, ne, v, orgs, free); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, row := range r.rows {
		t.Logf("%s: %s (%s) %s %s", row.Figure, row.Value, row.Reference, row.Result, row.Note)
		if strings.HasPrefix(row.Figure, "replica memory under a limit") {
			found = true
			if row.Result != "pass" {
				t.Errorf("under a %d-byte limit: %s (%s)", containerLimit(orgs), row.Value, row.Reference)
			}
		}
		if strings.HasPrefix(row.Figure, "replica under a memory limit") {
			t.Errorf("%s: %s", row.Figure, row.Value)
		}
	}
	if !found {
		t.Fatalf("no memory row in %+v", r.rows)
	}
}
