package gatekeeper

import (
	"math"
	"time"
)

// Decisions compare instants as Unix nanoseconds. Instants outside int64
// nanoseconds (before 1678, after 2262) are clamped: a view bound that far
// is never reached by a clock reading.
const maxNanoSec = math.MaxInt64/int64(time.Second) - 1

// unixNanos is t in Unix nanoseconds, clamped to int64.
func unixNanos(t time.Time) int64 {
	switch s := t.Unix(); {
	case s >= maxNanoSec:
		return math.MaxInt64
	case s <= -maxNanoSec:
		return math.MinInt64
	}
	return t.UnixNano()
}
