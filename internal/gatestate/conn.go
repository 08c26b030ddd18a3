package gatestate

import (
	"time"

	"github.com/nats-io/nats.go"
)

// PingInterval is the NATS ping interval a follower with maxStaleness
// needs (a third of it, at least 100 ms): set it as
// natsbus.ConnConfig.PingInterval. Two unanswered pings close a
// black-holed connection, so the client reconnects, and the ordered
// consumer resumes, within the staleness bound.
func PingInterval(maxStaleness time.Duration) time.Duration {
	if maxStaleness <= 0 {
		maxStaleness = DefaultMaxStaleness
	}
	return max(maxStaleness/3, 100*time.Millisecond)
}

// ConnOptions are the nats.Connect options a follower with maxStaleness
// needs, for callers that do not connect through natsbus.Connect (which
// already sets MaxPingsOutstanding(2) and takes ConnConfig.PingInterval).
func ConnOptions(maxStaleness time.Duration) []nats.Option {
	return []nats.Option{nats.PingInterval(PingInterval(maxStaleness)), nats.MaxPingsOutstanding(2)}
}
