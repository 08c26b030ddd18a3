package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/license"
)

// readModel is where the ledger keeps its read model and audit trail: in
// memory (rebuilt from the stream at start), or in PostgreSQL (projected
// by one active ledger; the others wait).
type readModel struct {
	store     string        // "memory" or "postgres"
	trail     *audit.Memory // the in-memory trail; nil with PostgreSQL
	reader    audit.Reader  // what the audit API reads
	tree      audit.TreeSource
	from      uint64 // the follower starts after this sequence
	projector *postgres.Projector
	db        *postgres.DB
}

// streamLookups is what the audit API's verification compares the trail
// with: the stream, for PostgreSQL's trail. The in-memory trail reads its
// records' bytes from the stream itself, and its verification checks them
// against the hashes it kept.
func (m *readModel) streamLookups(bus *natsbus.Bus) func() (audit.StreamLookup, func()) {
	if m.trail != nil {
		return nil
	}
	return streamLookups(bus)
}

func (m *readModel) close() {
	if m.db != nil {
		m.db.Close()
	}
}

// openReadModel chooses the store. With DATABASE_URL it checks the user's
// privileges, seeds the service from the rows at the projector's
// checkpoint (so only newer events are folded from the stream), and
// prepares the projector. PostgreSQL being down at start is not fatal:
// uploads need only NATS; the ledger then folds the whole stream and the
// projector catches up when PostgreSQL returns.
func (c *serveCmd) openReadModel(ctx context.Context, svc *ledger.Service, bus *natsbus.Bus, info natsbus.StreamInfo,
	reg prometheus.Registerer, log *slog.Logger) (*readModel, error) {
	if c.DatabaseURL == "" {
		trail := audit.NewMemory(bus)
		return &readModel{store: "memory", trail: trail, reader: trail, tree: trail}, nil
	}
	db, err := postgres.OpenDB(ctx, c.DatabaseURL)
	reachable := err == nil
	switch {
	case errors.Is(err, postgres.ErrUnavailable):
		log.Warn("PostgreSQL unreachable at start: serving from the stream; the projector catches up when it returns", "err", err)
		if db, err = postgres.OpenDBLater(ctx, c.DatabaseURL); err != nil {
			return nil, cli.Usage("DATABASE_URL: %v", err)
		}
	case err != nil:
		return nil, cli.Usage("DATABASE_URL: %v", err)
	}
	reader := db.AuditReader()
	m := &readModel{store: "postgres", db: db, reader: reader, tree: reader}
	if reachable {
		if err := c.checkPrivileges(ctx, db, log); err != nil {
			db.Close()
			return nil, err
		}
		m.from = c.seed(ctx, svc, bus, db, info, log)
	}
	m.projector = db.NewProjector(postgres.ProjectorConfig{Source: bus, Keys: svc.Keys(),
		InstallID: svc.InstallID, Logger: log.With("component", "projector"), Registry: reg})
	return m, nil
}

func (c *serveCmd) checkPrivileges(ctx context.Context, db *postgres.DB, log *slog.Logger) error {
	err := db.CheckPrivileges(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, postgres.ErrOverPrivileged) && c.AllowOwner:
		log.Warn("DATABASE_URL may rewrite the audit trail; accepted because of --allow-owner (development only)", "err", err)
		return nil
	case errors.Is(err, postgres.ErrOverPrivileged):
		return cli.Usage("%v", err)
	}
	return err
}

// seed installs the rows at the projector's checkpoint into the service
// and returns the checkpoint, or 0 (fold everything) when there is no
// usable snapshot.
func (c *serveCmd) seed(ctx context.Context, svc *ledger.Service, bus *natsbus.Bus, db *postgres.DB,
	info natsbus.StreamInfo, log *slog.Logger) uint64 {
	snap, err := db.ReadSnapshot(ctx, "org_licenses", svc.Trust(), postgres.PendingGraceFrom(bus))
	created := info.Created.UTC().Truncate(time.Microsecond)
	switch {
	case err != nil:
		log.Warn("read model snapshot unreadable: folding the stream from the start", "err", err)
		return 0
	case snap.Checkpoint == 0:
		return 0
	case snap.StreamCreated == nil || !snap.StreamCreated.Equal(created) || snap.Checkpoint > info.LastSeq:
		log.Warn("the read model belongs to another stream: folding the stream from the start",
			"checkpoint", snap.Checkpoint, "stream_head", info.LastSeq)
		return 0
	}
	svc.Seed(snap.States)
	if err := svc.Refresh(ctx, license.InstanceOrg); err != nil {
		log.Warn("instance state not folded from the stream yet", "err", err)
	}
	log.Info("read model loaded from PostgreSQL", "orgs", len(snap.States), "checkpoint", snap.Checkpoint,
		"to_fold", fmt.Sprint(info.LastSeq-snap.Checkpoint))
	return snap.Checkpoint
}

// checkpoints opens the store of the signed checkpoints: PostgreSQL's
// audit_checkpoints, or a file in the data directory.
func (m *readModel) checkpoints(dataDir string) (audit.Checkpoints, error) {
	if m.db != nil {
		return m.db.Checkpoints(), nil
	}
	return audit.OpenFileCheckpoints(filepath.Join(dataDir, "audit-checkpoints.jsonl"))
}
