package httpapi

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/usage"
	"github.com/licenseledger/ledger/license"
)

// putUsage records an org's active users (operators, and reporters of the
// org): PUT /api/usage?org=ORG {"users": N}. A report of the number
// already recorded appends nothing. It answers the org's status payload.
func (s *Server) putUsage(w http.ResponseWriter, r *http.Request) {
	org, e := orgOf(r)
	if e != nil {
		writeError(w, statusOf[e.Code], e.Code, e.Message)
		return
	}
	p := principal(r.Context())
	if (p.Role != auth.RoleOperator && p.Role != auth.RoleReporter) || !p.CoversOrg(org) {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token may not report the usage of "+org)
		return
	}
	var body struct {
		Users *int `json:"users"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Users == nil {
		writeError(w, http.StatusBadRequest, codeBodyInvalid, `the body needs "users": the org's active users, an integer 0..2147483647`)
		return
	}
	res, err := s.cfg.Service.ReportUsage(r.Context(), org, p.Actor(), *body.Users)
	if err != nil {
		s.writeCommandError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Report)
}

// putSeatEnforcement sets the install-wide seat enforcement mode
// (operators): PUT /api/seat-enforcement {"mode": "off|soft|hard"}.
func (s *Server) putSeatEnforcement(w http.ResponseWriter, r *http.Request) {
	s.putMode(w, r, s.cfg.Service.SetSeatEnforcement)
}

// getUsageReport is GET /api/usage/report?from=&to=&org=[&format=csv]:
// the seat true-up (operators, auditors and org admins, for the orgs they
// cover). from defaults to the start of the current month (UTC), to to
// now; each accepts YYYY-MM, YYYY-MM-DD or RFC 3339.
func (s *Server) getUsageReport(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	if p.Role != auth.RoleOperator && p.Role != auth.RoleAuditor && p.Role != auth.RoleOrgAdmin {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token may not read usage reports")
		return
	}
	if s.cfg.Audit == nil {
		writeError(w, http.StatusServiceUnavailable, ledger.CodeUnavailable, "the audit trail is not available")
		return
	}
	q := r.URL.Query()
	now := time.Now().UTC()
	uq := usage.Query{From: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), To: now, Org: q.Get("org")}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &uq.From}, {"to", &uq.To}} {
		if v := q.Get(f.name); v != "" {
			t, err := usage.ParseTime(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, f.name+": "+err.Error())
				return
			}
			*f.dst = t
		}
	}
	if uq.Org != "" && (!license.ValidSlug(uq.Org)) {
		writeError(w, http.StatusBadRequest, "org_invalid", "org must be a slug (^[a-z0-9][a-z0-9-]{0,62}$): usage is reported per org")
		return
	}
	if uq.Org != "" && !p.CoversOrg(uq.Org) {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token does not cover "+uq.Org)
		return
	}
	if p.Role == auth.RoleOrgAdmin || (p.Orgs != nil && !slices.Contains(p.Orgs, "*")) {
		uq.Scope = p.Orgs
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "format must be json or csv")
		return
	}
	if err := uq.Check(); err != nil {
		writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, err.Error())
		return
	}
	rows, err := usage.Compute(r.Context(), s.cfg.Audit, s.cfg.Service.VerifyingTrust(), uq)
	if err != nil {
		s.auditUnavailable(w, err)
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var b strings.Builder
		b.WriteString(usage.CSVHeader + "\r\n")
		for _, row := range rows {
			b.WriteString(row.CSV() + "\r\n")
		}
		_, _ = w.Write([]byte(b.String()))
		return
	}
	if rows == nil {
		rows = []usage.Row{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"from": uq.From.Format(time.RFC3339), "to": uq.To.Format(time.RFC3339), "rows": rows})
}
