package httpapi

import (
	"io"
	"net/http"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/license"
)

// licenseOrg selects the org and checks the caller may act on it.
func licenseOrg(w http.ResponseWriter, r *http.Request) (string, *auth.Principal, bool) {
	org, e := orgOf(r)
	if e != nil {
		writeError(w, statusOf[e.Code], e.Code, e.Message)
		return "", nil, false
	}
	p := principal(r.Context())
	if (p.Role != auth.RoleOperator && p.Role != auth.RoleOrgAdmin) || !p.CoversOrg(org) {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token may not manage the license of "+org)
		return "", nil, false
	}
	return org, p, true
}

func (s *Server) getLicense(w http.ResponseWriter, r *http.Request) {
	org, _, ok := licenseOrg(w, r)
	if !ok {
		return
	}
	rep, err := s.cfg.Service.Status(r.Context(), org)
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) postLicense(w http.ResponseWriter, r *http.Request) {
	org, p, ok := licenseOrg(w, r)
	if !ok {
		return
	}
	force := r.URL.Query().Get("force") == "true"
	if force && p.Role != auth.RoleOperator {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "only operators may force an older license")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, license.MaxInputSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "could not read the body: "+err.Error())
		return
	}
	res, err := s.cfg.Service.Upload(r.Context(), ledger.Upload{
		Org: org, Body: body, Actor: p.Actor(), Source: sourceOf(r), Force: force,
	})
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Report)
}

// sourceOf reads X-Ledger-Client: cli, ui, else api.
func sourceOf(r *http.Request) string {
	switch r.Header.Get("X-Ledger-Client") {
	case "cli":
		return events.SourceCLI
	case "ui":
		return events.SourceUI
	}
	return events.SourceAPI
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.cfg.Readiness(r.Context())
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}
