package follow

import (
	"context"

	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// reverified returns st verified again under trust, in compact form.
func (f *Follower) reverified(ctx context.Context, st *license.OrgState, trust projection.Trust) (*license.OrgState, error) {
	return projection.ReverifyFrom(ctx, f.bus, trust, st)
}
