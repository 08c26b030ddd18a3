package license

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/licenseledger/ledger/internal/sighup"
)

// Keys is a key ring that can be reloaded while readers use it. The zero
// value is not usable; create it with NewKeys. It is safe for concurrent use.
type Keys struct {
	cfg RingConfig
	cur atomic.Pointer[Ring]
}

// NewKeys loads the ring described by cfg.
func NewKeys(cfg RingConfig) (*Keys, error) {
	r, err := LoadRing(cfg)
	if err != nil {
		return nil, err
	}
	k := &Keys{cfg: cfg}
	k.cur.Store(r)
	return k, nil
}

// Ring returns the current ring.
func (k *Keys) Ring() *Ring { return k.cur.Load() }

// Reload re-reads the configured sources. On error the current ring stays
// in force. It reports whether the ring's content changed.
func (k *Keys) Reload() (changed bool, err error) {
	r, err := LoadRing(k.cfg)
	if err != nil {
		return false, err
	}
	old := k.cur.Swap(r)
	return old.Fingerprint() != r.Fingerprint(), nil
}

// ReloadOnSIGHUP reloads k on every SIGHUP until ctx ends, logging the
// outcome; onChange (optional) runs after a reload that changed the ring.
func (k *Keys) ReloadOnSIGHUP(ctx context.Context, log *slog.Logger, onChange func(*Ring)) {
	sighup.Handle(ctx, func() {
		changed, err := k.Reload()
		if err != nil {
			log.Error("key ring reload failed; keeping the current ring", "err", err,
				"keyring_fingerprint", k.Ring().Fingerprint())
			return
		}
		log.Info("key ring reloaded", "changed", changed, "keys", k.Ring().Len(),
			"keyring_fingerprint", k.Ring().Fingerprint())
		if changed && onChange != nil {
			onChange(k.Ring())
		}
	})
}
