package cli

import (
	"log/slog"
	"math"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// SetMemoryLimit sets the Go runtime's soft memory limit to 90% of the
// container's (the cgroup memory limit), so that the collector works
// harder before the kernel's OOM killer would: a replica's heap then stays
// inside a Kubernetes memory limit. GOMEMLIMIT, when set, wins;
// AUTOMEMLIMIT=off disables it, AUTOMEMLIMIT=0.8 changes the ratio. With
// no limit to follow nothing changes. It returns the limit in force.
func SetMemoryLimit(log *slog.Logger) int64 {
	limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case err != nil:
		log.Warn("memory limit not set from the container's", "err", err)
	case limit > 0 && limit < math.MaxInt64:
		log.Info("memory limit", "gomemlimit_bytes", limit)
	}
	return limit
}
