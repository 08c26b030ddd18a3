package httpapi

import (
	"net/http"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/ledger"
)

// getInstall answers the install's identity to any authenticated caller:
// what ledger status --install prints and support asks for.
func (s *Server) getInstall(w http.ResponseWriter, r *http.Request) {
	if principal(r.Context()).Role == auth.RoleReporter {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "a reporter token may only report usage")
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Service.Install())
}
