package gatekeeper

import (
	"math"
	"sync/atomic"
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

// wallRefresh is how often the default clock re-reads the wall clock.
const wallRefresh = time.Second

// fastClock is the default clock. time.Now reads two clocks (wall and
// monotonic); a decision only needs the wall time, which between two
// wall-clock steps advances with the monotonic clock. So fastClock keeps a
// base reading of time.Now and answers base + time.Since(base), which
// reads the monotonic clock alone, re-reading the wall clock every
// wallRefresh: a step of the system clock (settimeofday, an NTP step) is
// seen within that long; slewing is seen at once, as both clocks are
// slewed alike.
type fastClock struct{ base atomic.Pointer[clockBase] }

type clockBase struct {
	mono time.Time // a time.Now reading, with its monotonic clock
	wall int64     // its wall time in Unix nanoseconds
}

func newFastClock() *fastClock {
	c := &fastClock{}
	c.refresh()
	return c
}

func (c *fastClock) refresh() int64 {
	now := time.Now()
	c.base.Store(&clockBase{mono: now, wall: now.UnixNano()})
	return now.UnixNano()
}

// nanos is the current wall time in Unix nanoseconds.
func (c *fastClock) nanos() int64 {
	b := c.base.Load()
	if el := time.Since(b.mono); el >= 0 && el < wallRefresh {
		return b.wall + int64(el)
	}
	return c.refresh()
}
