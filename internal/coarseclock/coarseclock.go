// Package coarseclock is a wall clock read without a system call: while
// it is read, a goroutine stores the time every millisecond. The gate's
// decisions and the cached token lookups of jwtorg read it.
package coarseclock

import (
	"sync/atomic"
	"time"
)

// coarseTick is the clock's resolution: an instant is at most about this
// old when it is read (more only while the process is starved of CPU).
const coarseTick = time.Millisecond

// coarseIdle is how long the clock keeps ticking without a reader.
const coarseIdle = time.Second

// Clock is a wall clock for hot paths. Reading the system clock costs
// tens of nanoseconds (a third of a cached gate decision), and a decision
// or a cached token lookup needs the time only to compare it with an
// instant (a license's expiry, a day boundary, a token's exp): being a
// millisecond late there is invisible. So while it is being read, a
// goroutine stores the wall time every coarseTick and readers load it; it
// stops after coarseIdle without a reader, and the next reader reads the
// system clock itself and starts it again. A step of the system clock is
// seen within a tick. The zero value is ready to use.
type Clock struct {
	now   atomic.Int64  // Unix nanoseconds, refreshed every tick while running
	state atomic.Uint32 // clockRunning | clockRead
}

const (
	clockRunning = 1 << iota // the ticker runs
	clockRead                // read since the last tick (set once per tick, not per read)
)

// Default is the process's shared Clock: one ticker per process.
var Default Clock

// Nanos is the current wall time in Unix nanoseconds, at most about a
// tick late.
func (c *Clock) Nanos() int64 {
	if c.state.Load() == clockRunning|clockRead {
		return c.now.Load()
	}
	return c.slow()
}

// slow is Nanos on the first read since the last tick, or when the clock
// is not running (it reads the system clock and starts the ticker).
func (c *Clock) slow() int64 {
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

// Running reports whether the ticker runs.
func (c *Clock) Running() bool { return c.state.Load()&clockRunning != 0 }

func (c *Clock) run() {
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
