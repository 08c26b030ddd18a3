package httpapi

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
)

// operatorOnly answers 403 unless the caller is an operator.
func operatorOnly(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p := principal(r.Context())
	if p.Role != auth.RoleOperator {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "only operators may do this")
		return nil, false
	}
	return p, true
}

// deleteLicense removes the org's own license (operators).
func (s *Server) deleteLicense(w http.ResponseWriter, r *http.Request) {
	org, e := orgOf(r)
	if e != nil {
		writeError(w, statusOf[e.Code], e.Code, e.Message)
		return
	}
	p, ok := operatorOnly(w, r)
	if !ok {
		return
	}
	res, err := s.cfg.Service.Remove(r.Context(), org, p.Actor())
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Report)
}

// invalidate revokes a license id for the org (operators).
func (s *Server) invalidate(w http.ResponseWriter, r *http.Request) {
	org, e := orgOf(r)
	if e != nil {
		writeError(w, statusOf[e.Code], e.Code, e.Message)
		return
	}
	p, ok := operatorOnly(w, r)
	if !ok {
		return
	}
	var body struct {
		LicenseID string `json:"license_id"`
		Note      string `json:"note"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	res, err := s.cfg.Service.Invalidate(r.Context(), org, p.Actor(), body.LicenseID, body.Note)
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Report)
}

// putEnforcement sets the install-wide enforcement mode (operators).
func (s *Server) putEnforcement(w http.ResponseWriter, r *http.Request) {
	s.putMode(w, r, s.cfg.Service.SetEnforcement)
}

// putMode answers a PUT of an install-wide mode, {"mode": …} (operators),
// with the mode in force after set.
func (s *Server) putMode(w http.ResponseWriter, r *http.Request, set func(context.Context, events.Actor, string) (string, error)) {
	p, ok := operatorOnly(w, r)
	if !ok {
		return
	}
	var body struct {
		Mode string `json:"mode"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	mode, err := set(r.Context(), p.Actor(), body.Mode)
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": mode})
}

// Listing limits of GET /api/orgs.
const (
	defaultOrgsLimit = 100
	maxOrgsLimit     = 1000
)

// listOrgs pages through every org with an event (operators).
func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) {
	if _, ok := operatorOnly(w, r); !ok {
		return
	}
	q := r.URL.Query()
	limit := defaultOrgsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxOrgsLimit {
			writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "limit must be 1..1000")
			return
		}
		limit = n
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "cursor is not one this server returned")
			return
		}
		after = string(b)
	}
	page := s.cfg.Service.ListOrgs(after, limit)
	if page.NextCursor != nil {
		c := base64.RawURLEncoding.EncodeToString([]byte(*page.NextCursor))
		page.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, page)
}
