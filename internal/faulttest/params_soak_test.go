//go:build soak

package faulttest

import "time"

// Sizes of the soak runs (-tags soak): more faults, a million events.
const (
	natsKills      = 30
	leaderStops    = 15
	pgOutages      = 15
	bulkEvents     = 1_000_000
	projectorKills = 20
	restores       = 5
	// acksPerStep is how many acknowledged uploads each step of a
	// scenario waits for (between faults, during an outage).
	acksPerStep = 2_000
)

// catchUpTimeout bounds how long the projector may take to reach the
// stream head once the faults are over; stepTimeout bounds each step;
// readyTimeout bounds a process start (NATS recovery, a stream fold).
const (
	readyTimeout   = 15 * time.Minute
	catchUpTimeout = 30 * time.Minute
	stepTimeout    = 10 * time.Minute
)
