//go:build !soak

package faulttest

import "time"

// Sizes of the bounded runs (the default suite).
const (
	// natsKills is how many times nats-server is killed during uploads.
	natsKills = 3
	// leaderStops is how many times the stream leader is shut down.
	leaderStops = 2
	// pgOutages is how many times PostgreSQL is stopped during uploads.
	pgOutages = 2
	// bulkEvents is how many events the projector scenarios start from.
	bulkEvents = 2_000
	// projectorKills is how many active projector processes are killed.
	projectorKills = 3
	// restores is how many times the database is restored from a dump.
	restores = 1
	// acksPerStep is how many acknowledged uploads each step of a
	// scenario waits for (between faults, during an outage).
	acksPerStep = 25
)

// catchUpTimeout bounds how long the projector may take to reach the
// stream head once the faults are over; stepTimeout bounds each step;
// readyTimeout bounds a process start (NATS recovery, a stream fold).
const (
	readyTimeout   = time.Minute
	catchUpTimeout = 2 * time.Minute
	stepTimeout    = time.Minute
)
