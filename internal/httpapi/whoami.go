package httpapi

import (
	"net/http"
	"slices"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/events"
)

// Whoami is the answer of GET /api/whoami: what the caller's token may do,
// so a client (the web UI) shows only what the token can use.
type Whoami struct {
	Role auth.Role `json:"role"`
	// Orgs the token covers: ["*"] for every org (operators, auditors of
	// every org), else the list of the tokens file.
	Orgs []string `json:"orgs"`
	// Actor is how events attribute this token's changes.
	Actor events.Actor `json:"actor"`
}

// whoami answers the caller's role, orgs and actor to any authenticated
// caller.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	orgs := []string{"*"}
	if p.Orgs != nil && !slices.Contains(p.Orgs, "*") {
		orgs = slices.Clone(p.Orgs)
	}
	writeJSON(w, http.StatusOK, Whoami{Role: p.Role, Orgs: orgs, Actor: p.Actor()})
}
