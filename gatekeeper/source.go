// Package gatekeeper decides, per HTTP request, whether an org may be
// served: the org from one configured source, the route (allowlist,
// feature rules), the install-wide enforcement mode and the org's license
// state. It is importable as net/http middleware; cmd/gatekeeper runs it
// as a reverse proxy and an /authz endpoint for nginx, Caddy, Traefik and
// Envoy.
package gatekeeper

import (
	"context"
	"errors"

	"github.com/licenseledger/ledger/license"
)

// ErrUnavailable means an org's state cannot be known now (no stream, no
// PostgreSQL, or the decision deadline passed): the decision is
// license_state_unavailable.
var ErrUnavailable = errors.New("license state unavailable")

// Source provides license state to a Gate. Implementations (the stream
// follower of package follow, fixed maps in tests) must be safe for
// concurrent use and must answer cached orgs without I/O.
type Source interface {
	// State returns org's own state and the instance-wide state, at least
	// as new as minSeq on org's subject (0: whatever is current). An org
	// with no events has an empty own state (Seq 0), never nil. Errors
	// wrap ErrUnavailable.
	State(ctx context.Context, org string, minSeq uint64) (own, instance *license.OrgState, err error)
}

// CachedSource is an optional fast path a Source may add. CachedState
// answers from memory only — no I/O, no blocking, no allocation — and
// reports ok false when it cannot answer that way (org not in memory, state
// older than minSeq, state past its staleness bound). A Gate asks it first
// and calls State, under the decision deadline, only when ok is false:
// deriving a deadline context allocates, so a decision on a cached entry
// is allocation-free only through this method.
type CachedSource interface {
	Source
	CachedState(org string, minSeq uint64) (own, instance *license.OrgState, ok bool)
}

// GenerationSource is an optional addition to CachedSource. Generation
// returns a number that changes after every change that may alter an
// answer of CachedState (an org's state replaced, the cache loaded or
// replaced, staleness flipping). A Gate keeps the entry it decided an org
// on together with the generation read before asking CachedState, and
// while the generation stays the same it decides that org again without
// asking the source.
type GenerationSource interface {
	CachedSource
	Generation() uint64
}

// TokenVerifier verifies a request's bearer token in jwt mode; a
// *jwtorg.Verifier is one. OrgContext returns the org claim of a token that
// verifies (signature, algorithm, issuer, audience, expiry); an error
// wrapping jwtorg.ErrNoClaim for a token that verifies but carries no org
// claim (org_required); any other error for a token that does not verify
// (org_unauthenticated). It must be safe for concurrent use, and cheap
// for a token seen before: it runs on every request.
// ctx is the request's: it may end a wait for keys (a JWKS fetched again
// for a token naming a new key).
type TokenVerifier interface {
	OrgContext(ctx context.Context, token string) (string, error)
}
