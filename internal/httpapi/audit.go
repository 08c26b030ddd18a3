package httpapi

import (
	"bufio"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/ledger"
)

// Page limits of GET /api/audit (format=json).
const (
	defaultAuditLimit = 500
	maxAuditLimit     = 5000
)

// streamIdle is how long a streamed export may wait on a client that
// reads nothing before the connection is dropped; the server's write
// timeout would otherwise cut every export at a fixed length.
const streamIdle = time.Minute

// auditScope returns the orgs p may read the audit trail of (nil: every
// org). An org_admin's never include _instance.
func auditScope(p *auth.Principal) []string {
	if p.Role != auth.RoleOrgAdmin && (p.Orgs == nil || slices.Contains(p.Orgs, "*")) {
		return nil
	}
	scope := []string{}
	for _, o := range p.Orgs {
		if o != "*" && p.CoversOrg(o) {
			scope = append(scope, o)
		}
	}
	return scope
}

// auditRequest is a parsed GET /api/audit.
type auditRequest struct {
	q      audit.Query
	format string
}

// parseAuditRequest reads the filters, cursor, limit and format, and puts
// the caller's scope in the query. The error is ready to answer.
func parseAuditRequest(r *http.Request, p *auth.Principal) (auditRequest, *ledger.Error) {
	v := r.URL.Query()
	req := auditRequest{format: v.Get("format"), q: audit.Query{Scope: auditScope(p), Limit: defaultAuditLimit}}
	bad := func(msg string) *ledger.Error { return &ledger.Error{Code: ledger.CodeBadRequest, Message: msg} }
	switch req.format {
	case "":
		req.format = audit.FormatJSON
	case audit.FormatJSON, audit.FormatJSONL, audit.FormatCSV:
	default:
		return req, bad("format must be json, jsonl or csv")
	}
	if v.Get("org") != "" || r.Header.Get("X-Org-Slug") != "" {
		org, e := orgOf(r)
		if e != nil {
			return req, e
		}
		if req.q.Scope != nil && !slices.Contains(req.q.Scope, org) {
			return req, &ledger.Error{Code: ledger.CodeForbidden, Message: "this token may not read the audit trail of " + org}
		}
		req.q.Org = org
	}
	if t := v.Get("type"); t != "" {
		if !validType(t) {
			return req, bad("type must be an event type such as license.uploaded, or invalid")
		}
		req.q.Type = t
	}
	for _, f := range []struct {
		name string
		to   *time.Time
	}{{"since", &req.q.Since}, {"until", &req.q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return req, bad(f.name + " must be an RFC 3339 time, such as 2026-11-29T13:01:02Z")
			}
			*f.to = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditLimit {
			return req, bad("limit must be 1..5000")
		}
		req.q.Limit = n
	}
	if req.format != audit.FormatJSON {
		req.q.Limit = 0 // streamed: every matching record
	}
	switch v.Get("order") {
	case "", "asc":
	case "desc":
		req.q.Desc = true
	default:
		return req, bad("order must be asc or desc")
	}
	if c := v.Get("cursor"); c != "" {
		pos, ok := parseAuditCursor(c)
		if !ok {
			return req, bad("cursor is not one this server returned")
		}
		// A cursor is a position in the trail: the page goes on past it
		// in the order asked for, older with desc, newer with asc.
		if req.q.Desc {
			req.q.Before = pos
		} else {
			req.q.After = pos
		}
	}
	return req, nil
}

// validType accepts what event types look like: 1..64 of a-z 0-9 . _ -.
func validType(t string) bool {
	if len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// The cursor is opaque to clients: a seq, encoded (the last of the page
// for next_cursor, the first for prev_cursor). It carries no filter, no
// scope and no order, which every request states again.
func auditCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatUint(seq, 10)))
}

func parseAuditCursor(c string) (uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(string(b), "seq:")
	n, err := strconv.ParseUint(s, 10, 64)
	return n, ok && err == nil
}

// auditAllowed answers 403 unless p's role is one of roles, and 503 when
// the server has no audit trail.
func (s *Server) auditAllowed(w http.ResponseWriter, p *auth.Principal, roles ...auth.Role) bool {
	if !slices.Contains(roles, p.Role) {
		writeError(w, http.StatusForbidden, ledger.CodeForbidden, "this token may not read the audit trail")
		return false
	}
	if s.cfg.Audit == nil {
		writeError(w, http.StatusServiceUnavailable, ledger.CodeUnavailable, "the audit trail is not available")
		return false
	}
	return true
}

// listAudit is GET /api/audit: auditors, operators, and org admins for
// their own orgs.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	if !s.auditAllowed(w, p, auth.RoleAuditor, auth.RoleOperator, auth.RoleOrgAdmin) {
		return
	}
	req, e := parseAuditRequest(r, p)
	if e != nil {
		writeError(w, statusOf[e.Code], e.Code, e.Message)
		return
	}
	if req.format == audit.FormatJSON {
		s.auditPage(w, r, req.q)
		return
	}
	s.auditStream(w, r, req)
}

// auditPage answers one page: {"events": [record…], "next_cursor",
// "prev_cursor"}. next_cursor, in the same order, goes on past the page's
// last record; prev_cursor, the first record's position, reads the
// records before the page with the other order.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, q audit.Query) {
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	page := struct {
		Events     []audit.RecordJSON `json:"events"`
		NextCursor *string            `json:"next_cursor"`
		PrevCursor *string            `json:"prev_cursor"`
	}{Events: []audit.RecordJSON{}}
	var last uint64
	err := s.cfg.Audit.Scan(r.Context(), q, func(rec *audit.Record) error {
		if len(page.Events) == limit {
			c := auditCursor(last)
			page.NextCursor = &c
			return nil
		}
		if len(page.Events) == 0 {
			c := auditCursor(rec.Seq)
			page.PrevCursor = &c
		}
		page.Events = append(page.Events, audit.JSONOf(rec))
		last = rec.Seq
		return nil
	})
	if err != nil {
		s.auditUnavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) auditUnavailable(w http.ResponseWriter, err error) {
	s.cfg.Logger.Error("audit trail unavailable", "err", err)
	w.Header().Set("Retry-After", "2")
	writeError(w, http.StatusServiceUnavailable, ledger.CodeUnavailable, "the audit trail is unavailable; retry")
}

// auditStream streams every matching record as JSON Lines or CSV. A store
// failure before the first 32 KiB went out is a 503; after, the response
// is cut short (no final chunk), which clients see as an error.
func (s *Server) auditStream(w http.ResponseWriter, r *http.Request, req auditRequest) {
	ctype, name := "application/x-ndjson", "audit.jsonl"
	if req.format == audit.FormatCSV {
		ctype, name = "text/csv; charset=utf-8", "audit.csv"
	}
	out := &streamWriter{w: w, rc: http.NewResponseController(w), ctype: ctype, name: name}
	buf := bufio.NewWriterSize(out, 32<<10)
	enc, err := audit.NewEncoder(buf, req.format)
	if err == nil {
		err = s.cfg.Audit.Scan(r.Context(), req.q, enc.Encode)
	}
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = buf.Flush()
	}
	switch {
	case err == nil:
		out.start() // an empty JSONL answer writes nothing
	case !out.started:
		s.auditUnavailable(w, err)
	case r.Context().Err() == nil && !errors.Is(err, errClientGone):
		s.cfg.Logger.Error("audit export cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// errClientGone is a write to a client that went away.
var errClientGone = errors.New("the client went away")

// streamWriter sends the headers with the first bytes, and keeps pushing
// the write deadline back while the client reads.
type streamWriter struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	ctype, name string
	started     bool
}

func (s *streamWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", s.ctype)
	h.Set("Content-Disposition", `attachment; filename="`+s.name+`"`)
	h.Set("Cache-Control", "no-store")
	s.w.WriteHeader(http.StatusOK)
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.start()
	s.rc.SetWriteDeadline(time.Now().Add(streamIdle)) // unsupported by test recorders: ignored
	n, err := s.w.Write(p)
	if err != nil {
		err = errors.Join(errClientGone, err)
	}
	return n, err
}

// verifyAudit is GET /api/audit/verify: operators and auditors of every
// org verify the whole trail, with ?digest=SEQ:HEX checked when given;
// auditors of some orgs and org admins verify those orgs' records only
// (audit.VerifyOptions.Scope), and learn nothing of the others: no row
// count, no digest, no bad seq outside their orgs. Either is compared with
// the stream when the server can read it. One verification runs at a
// time; others wait their turn.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	if !s.auditAllowed(w, p, auth.RoleAuditor, auth.RoleOperator, auth.RoleOrgAdmin) {
		return
	}
	scope := auditScope(p)
	digest := r.URL.Query().Get("digest")
	if digest != "" {
		if scope != nil {
			writeError(w, http.StatusForbidden, ledger.CodeForbidden, "a digest covers every org's records: only operators and auditors of every org check one")
			return
		}
		if _, _, err := audit.ParseDigest(digest); err != nil {
			writeError(w, http.StatusBadRequest, ledger.CodeBadRequest, "digest must be SEQ:HEX (64 hex digits)")
			return
		}
	}
	select {
	case s.verifying <- struct{}{}:
		defer func() { <-s.verifying }()
	case <-r.Context().Done():
		return
	}
	// The walk may outlast the server's write timeout; the answer is small.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	opts := audit.VerifyOptions{Digest: digest, Scope: scope}
	if s.cfg.StreamMsg != nil {
		var done func()
		opts.Stream, done = s.cfg.StreamMsg()
		defer done()
	}
	res, err := audit.Verify(r.Context(), s.cfg.Audit, opts)
	if err != nil {
		s.auditUnavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
