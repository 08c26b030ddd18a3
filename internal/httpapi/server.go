// Package httpapi is the ledger's HTTP API: authentication, org selection,
// the license endpoints, health, readiness and metrics. Every error is JSON
// {"error": code, "message": text} with the status of one table.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/bearer"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/witness"
	"github.com/licenseledger/ledger/license"
)

// Readiness is what /readyz reports.
type Readiness struct {
	Ready        bool   `json:"-"`
	NATS         string `json:"nats"`          // ok | unavailable
	Store        string `json:"store"`         // memory | postgres | loading
	ProjectorLag uint64 `json:"projector_lag"` // stream head minus the last folded sequence
	// OrgsUnverified counts the orgs whose license key this ledger has
	// not verified yet (a start verifies them in the background; a read
	// verifies what it returns first). It never makes the ledger unready.
	OrgsUnverified int `json:"orgs_unverified"`
	// Stream is "ok" when the stream's configuration is the contract's,
	// else what differs (each field, expected and actual) and how to
	// restore it; such a difference makes the ledger unready.
	Stream string `json:"stream"`
	// Projector says why the PostgreSQL projector stopped (a newer schema,
	// a recreated stream); omitted while it runs.
	Projector string `json:"projector,omitempty"`
	// TokensFile says which lines of the tokens file grant nothing, or
	// that the file grants nothing at all; null when every line is in
	// force. It never makes the ledger unready: the other tokens work.
	TokensFile *TokensFileReport `json:"tokens_file"`
	// AuditWitnesses is what each witness last said of the checkpoints
	// (a "fork" is a refusal: the trail may have been forked or rewritten);
	// omitted without witnesses. It never makes the ledger unready.
	AuditWitnesses []witness.Status `json:"audit_witnesses,omitempty"`
}

// TokensFileReport is /readyz's account of a tokens file that is not
// entirely in force. It names lines and kinds only: what is wrong with a
// line, the log says.
type TokensFileReport struct {
	// Refused is why none of the file's tokens is trusted (insecure,
	// unreadable); null when the file was read.
	Refused *string `json:"refused"`
	// Ignored is how many lines grant nothing; Lines are the first
	// maxReportedLines of them.
	Ignored int           `json:"ignored"`
	Lines   []IgnoredLine `json:"lines"`
}

// IgnoredLine is a line of the tokens file that grants nothing.
type IgnoredLine struct {
	Line int    `json:"line"`
	Kind string `json:"kind"` // malformed | duplicate
}

// maxReportedLines bounds the lines /readyz lists.
const maxReportedLines = 20

// ReportTokensFile returns the report of st, nil when every line is in
// force.
func ReportTokensFile(st auth.FileStatus) *TokensFileReport {
	if st.OK() {
		return nil
	}
	r := &TokensFileReport{Ignored: len(st.Broken), Lines: []IgnoredLine{}}
	if st.Refused != "" {
		r.Refused = &st.Refused
	}
	for _, le := range st.Broken[:min(len(st.Broken), maxReportedLines)] {
		r.Lines = append(r.Lines, IgnoredLine{Line: le.Line, Kind: le.Kind})
	}
	return r
}

// Config wires the API.
type Config struct {
	Service   *ledger.Service
	Tokens    *auth.Tokens
	Readiness func(ctx context.Context) Readiness
	Registry  *prometheus.Registry
	Logger    *slog.Logger
	// Audit is the trail /api/audit reads; nil answers 503.
	Audit audit.Reader
	// StreamMsg, when set, opens a lookup of the stream's messages for one
	// verification, and a func releasing it: /api/audit/verify then
	// compares every record with the stream.
	StreamMsg func() (audit.StreamLookup, func())
	// Tree, Checkpoints and CheckpointKey (the verifier key) serve the
	// signed checkpoints and proofs; nil answers 503.
	Tree          audit.TreeSource
	Checkpoints   audit.Checkpoints
	CheckpointKey string
}

// Server is the HTTP API.
type Server struct {
	cfg       Config
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	verifying chan struct{} // one audit verification at a time
}

// New returns the API server; its metrics are registered in cfg.Registry.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, verifying: make(chan struct{}, 1),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	cfg.Registry.MustRegister(s.requests, s.latency)
	return s
}

// route is one path with its handlers by method.
type route struct {
	path    string
	methods map[string]http.HandlerFunc
}

// routes is the route table: every path and its methods.
func (s *Server) routes() []route {
	return []route{
		{"/api/license", map[string]http.HandlerFunc{
			http.MethodGet:    s.authed(s.getLicense),
			http.MethodPost:   s.authed(s.postLicense),
			http.MethodDelete: s.authed(s.deleteLicense),
		}},
		{"/api/license/invalidate", map[string]http.HandlerFunc{http.MethodPost: s.authed(s.invalidate)}},
		{"/api/enforcement", map[string]http.HandlerFunc{http.MethodPut: s.authed(s.putEnforcement)}},
		{"/api/seat-enforcement", map[string]http.HandlerFunc{http.MethodPut: s.authed(s.putSeatEnforcement)}},
		{"/api/usage", map[string]http.HandlerFunc{http.MethodPut: s.authed(s.putUsage)}},
		{"/api/usage/report", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getUsageReport)}},
		{"/api/orgs", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.listOrgs)}},
		{"/api/install", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getInstall)}},
		{"/api/whoami", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.whoami)}},
		{"/api/audit", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.listAudit)}},
		{"/api/audit/verify", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.verifyAudit)}},
		{"/api/audit/checkpoint", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getCheckpoint)}},
		{"/api/audit/checkpoint/key", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getCheckpointKey)}},
		{"/api/audit/proof/inclusion", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getInclusionProof)}},
		{"/api/audit/proof/consistency", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getConsistencyProof)}},
		{"/api/audit/proof/record", map[string]http.HandlerFunc{http.MethodGet: s.authed(s.getProofBundle)}},
		{"/healthz", map[string]http.HandlerFunc{http.MethodGet: s.healthz}},
		{"/readyz", map[string]http.HandlerFunc{http.MethodGet: s.readyz}},
		{"/api/openapi.json", map[string]http.HandlerFunc{http.MethodGet: s.openAPI}},
		{"/metrics", map[string]http.HandlerFunc{http.MethodGet: promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP}},
	}
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.Handle(r.path, s.instrument(r.path, r.dispatch))
	}
	mux.Handle("/", s.instrument("other", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, ledger.CodeNotFound, "no such endpoint")
	}))
	return mux
}

func (rt route) dispatch(w http.ResponseWriter, r *http.Request) {
	if h, ok := rt.methods[r.Method]; ok {
		h(w, r)
		return
	}
	if r.Method == http.MethodHead {
		if h, ok := rt.methods[http.MethodGet]; ok {
			h(w, r)
			return
		}
	}
	allow := make([]string, 0, len(rt.methods))
	for m := range rt.methods {
		allow = append(allow, m)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+rt.path)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// write deadlines of streamed answers).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) instrument(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		s.requests.WithLabelValues(name, strconv.Itoa(rec.code)).Inc()
		s.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if rec.code >= 500 {
			s.cfg.Logger.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", rec.code)
		}
	})
}

// MessageUnauthorized is the 401 answer: what to send, and where a token
// comes from.
const MessageUnauthorized = "a valid bearer token is required (Authorization: Bearer <token>): the operator token of a " +
	"single-node install is in $DATA_DIR/admin.token (cat data/admin.token); others are made with ledger token create"

type principalKey struct{}

// principal returns the authenticated caller set by authed.
func principal(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(principalKey{}).(*auth.Principal)
	return p
}

// authed requires a known bearer token within its rate limit and puts its
// principal in the request context.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	limited := s.rateLimitedCounter()
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r.Header)
		p, known := s.cfg.Tokens.Authenticate(tok)
		if !ok || !known {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ledger"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", MessageUnauthorized)
			return
		}
		if !s.withinRateLimit(w, p, limited) {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// bearerToken returns the token of the request's one Authorization header
// with the Bearer scheme, any case, then one or more spaces (RFC 9110
// §11.1). Two Authorization headers are refused: which one counts would be
// a guess.
func bearerToken(h http.Header) (string, bool) {
	v := h.Values("Authorization")
	if len(v) != 1 {
		return "", false
	}
	tok, ok := bearer.Parse(v[0])
	tok = strings.TrimRight(tok, " \t")
	return tok, ok && tok != ""
}

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[string]int{
	ledger.CodeMalformed:        http.StatusBadRequest,
	ledger.CodeSignatureInvalid: http.StatusUnprocessableEntity,
	ledger.CodeUnknownKey:       http.StatusUnprocessableEntity,
	ledger.CodeOrgMismatch:      http.StatusUnprocessableEntity,
	ledger.CodeInstallMismatch:  http.StatusUnprocessableEntity,
	ledger.CodeRevoked:          http.StatusUnprocessableEntity,
	ledger.CodeAlreadyExpired:   http.StatusUnprocessableEntity,
	ledger.CodeOlderThanCurrent: http.StatusConflict,
	ledger.CodeConflict:         http.StatusConflict,
	ledger.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	ledger.CodeUnavailable:      http.StatusServiceUnavailable,
	ledger.CodeForbidden:        http.StatusForbidden,
	ledger.CodeNotFound:         http.StatusNotFound,
	ledger.CodeBadRequest:       http.StatusBadRequest,
	"org_ambiguous":             http.StatusBadRequest,
	"org_required":              http.StatusBadRequest,
	"org_invalid":               http.StatusBadRequest,
	codeRateLimited:             http.StatusTooManyRequests,
	codeBodyInvalid:             http.StatusBadRequest,
}

// writeCommandError answers a command error.
func (s *Server) writeCommandError(w http.ResponseWriter, err error) {
	code := ledger.CodeOf(err)
	var e *ledger.Error
	msg := err.Error()
	if errors.As(err, &e) {
		msg = e.Message
	}
	if e != nil && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	switch code {
	case ledger.CodeConflict:
		w.Header().Set("Retry-After", "1")
		msg = "the org changed concurrently too many times; retry"
	case ledger.CodeUnavailable, "":
		s.cfg.Logger.Error("event store unavailable", "err", err)
		w.Header().Set("Retry-After", "2")
		code, msg = ledger.CodeUnavailable, "the event store is unavailable; nothing was changed, retry"
	}
	writeError(w, statusOf[code], code, msg)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// orgOf selects the org of a /api/license request: ?org= or X-Org-Slug.
func orgOf(r *http.Request) (string, *ledger.Error) {
	q, h := r.URL.Query().Get("org"), r.Header.Get("X-Org-Slug")
	org := q
	switch {
	case q != "" && h != "" && q != h:
		return "", &ledger.Error{Code: "org_ambiguous", Message: "?org= and X-Org-Slug name different orgs"}
	case q == "" && h == "":
		return "", &ledger.Error{Code: "org_required", Message: "name the org with ?org= or X-Org-Slug"}
	case q == "":
		org = h
	}
	if !events.ValidOrg(org) {
		return "", &ledger.Error{Code: "org_invalid", Message: "an org is a slug (^[a-z0-9][a-z0-9-]{0,62}$) or " + license.InstanceOrg}
	}
	return org, nil
}
