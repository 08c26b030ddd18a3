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

// coarseTick is the default clock's resolution: an instant is at most
// about this old when a decision reads it (more only while the process
// is starved of CPU).
const coarseTick = time.Millisecond

// coarseIdle is how long the default clock keeps ticking without a reader.
const coarseIdle = time.Second

// coarseClock is the default clock. Reading the system clock costs tens of
// nanoseconds (a third of a cached decision), and a decision needs the
// time only to compare it with the instants a view holds for (expiry,
// grace end, a day boundary): being a millisecond late there is
// invisible. So while decisions are being made, a goroutine stores the
// wall time every coarseTick and readers load it; it stops after
// coarseIdle without a reader, and the next reader reads the system clock
// itself and starts it again. A step of the system clock is seen within a
// tick.
type coarseClock struct {
	now   atomic.Int64  // Unix nanoseconds, refreshed every tick while running
	state atomic.Uint32 // clockRunning | clockRead
}

const (
	clockRunning = 1 << iota // the ticker runs
	clockRead                // read since the last tick (set once per tick, not per read)
)

// defaultClock is shared by every Gate with the default clock: one ticker
// per process.
var defaultClock coarseClock

// nanos is the current wall time in Unix nanoseconds.
func (c *coarseClock) nanos() int64 {
	if c.state.Load() == clockRunning|clockRead {
		return c.now.Load()
	}
	return c.slow()
}

// slow is nanos on the first read since the last tick, or when the clock
// is not running (it reads the system clock and starts the ticker).
func (c *coarseClock) slow() int64 {
	for {
		s := c.state.Load()
		if s&clockRunning != 0 {
			c.state.Or(clockRead)
			return c.now.Load()
		}
		now := time.Now().UnixNano()
		c.now.Store(now) // before running: a reader that sees running sees a fresh value
		if c.state.CompareAndSwap(s, clockRunning|clockRead) {
			go c.run()
			return now
		}
	}
}

// running reports whether the ticker runs.
func (c *coarseClock) running() bool { return c.state.Load()&clockRunning != 0 }

func (c *coarseClock) run() {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	idle := 0
	for range t.C {
		c.now.Store(time.Now().UnixNano())
		if c.state.And(^uint32(clockRead))&clockRead != 0 {
			idle = 0
			continue
		}
		if idle++; idle >= int(coarseIdle/coarseTick) {
			c.state.And(^uint32(clockRunning))
			return
		}
	}
}
