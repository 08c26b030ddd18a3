//go:build soak

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// soakEvents is the size of the trail the soak reseeds, backs up and
// restores.
const soakEvents = 100_000

// A large trail: reseed from PostgreSQL, back the stream up, restore it
// into another data directory; the times are logged (go test -v).
func TestSoakReseedBackupRestore(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t, dsn)
	cols := []string{"seq", "event_id", "subject", "org_slug", "type", "actor_kind", "actor_id",
		"occurred_at", "recorded_at", "envelope", "envelope_raw", "prev_hash", "hash"}
	prev := audit.Zero
	for done := 0; done < soakEvents; {
		var rows [][]any
		for ; done < soakEvents && len(rows) < 10_000; done++ {
			org := fmt.Sprintf("org-%d", done%500)
			env, err := events.New(events.TypeRejected, org, time.Now(), events.Actor{Kind: events.ActorOperator, ID: "ops"}, 0,
				map[string]any{"code": "license_malformed", "fingerprint": strings.Repeat("9f", 32), "source": "api"})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := env.Encode()
			r := audit.NewRecord(events.Decode(events.AuditSubject(org), uint64(done+1), raw), prev, time.Now())
			prev = r.Hash
			rows = append(rows, postgres.AuditRow(r))
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"license_audit"}, cols, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
	}
	dir, bdir := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	for i, step := range [][]string{
		{"stream", "reseed", "--data-dir", dir, "--database-url", dsn, "--nats-listen", "off", "--log-level", "warn"},
		{"backup", bdir, "--data-dir", dir, "--nats-listen", "off", "--log-level", "warn"},
		{"restore", bdir, "--data-dir", t.TempDir(), "--nats-listen", "off", "--log-level", "warn"},
	} {
		start := time.Now()
		code, out, errOut := cliRun(t, "", step...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", step[0], code, out, errOut)
		}
		t.Logf("%s of %d events: %s\n%s", []string{"stream reseed", "backup", "restore"}[i], soakEvents, time.Since(start).Round(time.Millisecond), out)
	}
}
