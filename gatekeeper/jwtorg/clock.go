package jwtorg

import (
	"sync/atomic"
	"time"
)

// coarseClock is the default clock of cached lookups. Reading the system
// clock costs about as much as the rest of a cached lookup, and a lookup
// needs the time only to compare it with a token's exp plus the leeway:
// being a millisecond late there is invisible. So while lookups are being
// made, a goroutine stores the wall time every coarseTick and readers load
// it; it stops after coarseIdle without a reader, and the next reader reads
// the system clock itself and starts it again. (The gatekeeper's decision
// clock works the same way.)
type coarseClock struct {
	now   atomic.Int64  // Unix nanoseconds, refreshed every tick while running
	state atomic.Uint32 // clockRunning | clockRead
}

const (
	coarseTick = time.Millisecond
	coarseIdle = time.Second
)

const (
	clockRunning = 1 << iota // the ticker runs
	clockRead                // read since the last tick (set once per tick, not per read)
)

// defaultClock is shared by every Verifier without Config.Now.
var defaultClock coarseClock

// nanos is the current wall time in Unix nanoseconds, at most about a
// tick late.
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
