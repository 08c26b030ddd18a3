package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/licenseledger/ledger/internal/tick"
)

// LogDigests logs the trail's digest every interval until ctx ends:
// msg="audit digest" digest=<seq:hex> rows=N. Kept outside the install
// (log archive, ticket, printout), a digest lets `ledger audit verify
// --digest` prove later that nothing up to seq changed. rows is the head's
// seq: the trail runs from 1 without a gap. interval <= 0 logs nothing.
func LogDigests(ctx context.Context, r Reader, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	tick.Every(ctx, interval, func() {
		seq, h, err := r.Head(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("audit digest unavailable", "err", err)
			}
			return
		}
		log.Info("audit digest", "digest", Digest(seq, h), "rows", seq)
	})
}
