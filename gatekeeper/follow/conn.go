package follow

import (
	"time"
)

// PingInterval is the NATS ping interval a follower with maxStaleness
// needs (a third of it, at least 100 ms). Two unanswered pings close a
// black-holed connection, so the client reconnects, and the consumer
// resumes, within the staleness bound (natsstream.ConnOptions sets it).
func PingInterval(maxStaleness time.Duration) time.Duration {
	if maxStaleness <= 0 {
		maxStaleness = DefaultMaxStaleness
	}
	return max(maxStaleness/3, 100*time.Millisecond)
}
