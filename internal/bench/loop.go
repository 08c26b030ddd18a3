package bench

import (
	"bufio"
	"net/http"
	"runtime"
	"strings"
	"time"
)

// timing is one timed run of an operation repeated n times.
type timing struct {
	n      int
	d      time.Duration
	allocs uint64 // heap allocations during the run, by any goroutine
}

func (t timing) nsPerOp() float64 { return float64(t.d.Nanoseconds()) / float64(t.n) }

// allocsPerOp rounds down, as Go benchmarks do.
func (t timing) allocsPerOp() int64 { return int64(t.allocs) / int64(t.n) }

// measure times op repeated until one run lasts at least d, growing the
// count from 1 as Go benchmarks do (aiming 20% past d, at most 100× per
// step), and returns that last run. The process must be otherwise quiet:
// allocations are counted process-wide (runtime.MemStats.Mallocs).
func measure(d time.Duration, op func()) timing {
	const maxN = 1_000_000_000
	n := 1
	for {
		t := timeN(n, op)
		if t.d >= d || n >= maxN {
			return t
		}
		next := int(1.2 * float64(n) * float64(d) / float64(max(t.d, 1)))
		n = min(max(next, n+1), 100*n, maxN)
	}
}

func timeN(n int, op func()) timing {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range n {
		op()
	}
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return timing{n: n, d: d, allocs: after.Mallocs - before.Mallocs}
}

// benchTime is how long each timed run of measure lasts.
func (r *runner) benchTime() time.Duration {
	if r.cfg.Quick {
		return 300 * time.Millisecond
	}
	return time.Second
}

// inboundRequest is a GET of target as a server receives it, built as
// net/http/httptest.NewRequest builds one (which would link the testing
// package into the ledger binary).
func inboundRequest(target string) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: example.com\r\n\r\n")))
	if err != nil {
		return nil, err
	}
	req.RemoteAddr = "192.0.2.1:1234"
	return req, nil
}
