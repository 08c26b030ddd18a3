package coarseclock

import (
	"testing"
	"time"
)

// The clock follows the wall clock while read, and stops its
// ticker once nobody reads it; the next read starts it again.
func TestCoarseClock(t *testing.T) {
	var c Clock
	for range 50 {
		before := time.Now().UnixNano()
		got := c.Nanos()
		after := time.Now().UnixNano()
		// At most a tick behind, give or take a starved scheduler.
		if got > after || got < before-int64(time.Second) {
			t.Fatalf("clock %d outside [%d − 1 s, %d]", got, before, after)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !c.Running() {
		t.Fatal("not ticking while read")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Running() {
		if time.Now().After(deadline) {
			t.Fatal("still ticking 10 s after the last read")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := time.Now().UnixNano()
	if got := c.Nanos(); got < before || !c.Running() {
		t.Errorf("a read after idling: %d before %d, running %v", got, before, c.Running())
	}
}
