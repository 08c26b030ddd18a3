package httpapi

import (
	"net/http"
)

// getInstall answers the install's identity to any authenticated caller:
// what ledger status --install prints and support asks for.
func (s *Server) getInstall(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Service.Install())
}
