// Package tick runs periodic work until a context ends.
package tick

import (
	"context"
	"time"
)

// Every calls fn every d until ctx ends (never immediately).
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
