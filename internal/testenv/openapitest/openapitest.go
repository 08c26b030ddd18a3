// Package openapitest checks an API's traffic against its OpenAPI
// description (internal/httpapi/openapi.json) with kin-openapi: a
// middleware the test servers wrap the API handler in validates every
// request and every response, and fails the test on a mismatch. It is
// test support: no production binary links it (deploy/manifesttest).
//
// What it checks, for each request the wrapped handler answers:
//
//   - a path the document does not list must be answered 404, and a
//     method its path does not list 405 with Allow, each with the error
//     body of that status;
//   - a request the document refuses (parameters, body, no bearer token
//     where one is required) must be refused: a status of 400 or more;
//   - the response's status must be documented for the operation, its
//     Content-Type one of that response's, its headers as documented
//     (Retry-After on 429, …), and a JSON body must match the schema.
//
// What it does not: the bodies of non-JSON answers (CSV, JSON Lines, the
// text/plain checkpoint notes and key, Prometheus text) beyond their
// Content-Type; a body over 32 MiB; the body of a request to an operation
// marked x-ledger-sniffed-body (POST /api/license takes a compact key or
// JSON whatever the Content-Type); and a request the document accepts but
// the server refuses (the server is stricter than JSON Schema can say:
// duplicate keys, semantic checks). A parameter given empty is dropped
// before the request is checked: the server takes it as absent. A JSON
// request body sent without a
// Content-Type, which the server reads as JSON, is checked as the
// operation's one documented media type.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/licenseledger/ledger/internal/bearer"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// maxBody bounds the response bytes kept for validation.
const maxBody = 32 << 20

// Load parses and validates an OpenAPI document.
func Load(data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	return doc, nil
}

var document = sync.OnceValues(func() (*openapi3.T, error) { return Load(httpapi.OpenAPI) })

// Document returns httpapi.OpenAPI, loaded and validated once.
func Document() (*openapi3.T, error) { return document() }

var (
	total atomic.Int64
	seen  sync.Map // "GET /api/license" → struct{}: the operations exercised
)

// Total is how many requests every Validator of the process checked.
func Total() int64 { return total.Load() }

// Unexercised lists the document's operations ("GET /api/license") no
// Validator of the process has seen a request of, sorted.
func Unexercised() []string {
	doc, err := Document()
	if err != nil {
		return nil
	}
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if _, ok := seen.Load(method + " " + path); !ok {
				out = append(out, method+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Summary is one line for a TestMain: the requests checked and the
// operations none exercised.
func Summary() string {
	s := fmt.Sprintf("openapitest: %d API requests checked against the OpenAPI document", Total())
	if u := Unexercised(); len(u) > 0 {
		s += "; not exercised: " + strings.Join(u, ", ")
	}
	return s
}

// Validator checks the traffic of handlers it wraps against the API's
// document, reporting mismatches to its test.
type Validator struct {
	t    testing.TB
	doc  *openapi3.T
	n    atomic.Int64
	mu   sync.Mutex
	done bool
}

// New returns a validator reporting to t. Register it before the server
// whose handler it wraps, so that the server stops (its t.Cleanup runs)
// before the validator stops reporting.
func New(t testing.TB) *Validator {
	t.Helper()
	doc, err := Document()
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	v := &Validator{t: t, doc: doc}
	t.Cleanup(func() {
		v.mu.Lock()
		v.done = true
		v.mu.Unlock()
	})
	return v
}

// Count is how many requests v checked.
func (v *Validator) Count() int64 { return v.n.Load() }

func (v *Validator) errorf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.done {
		v.t.Errorf("openapi: "+format, args...)
	}
}

// Wrap returns h checked against the document.
func (v *Validator) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// The client went away mid-body: nothing to check.
			h.ServeHTTP(w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if !rec.wrote {
			rec.code = http.StatusOK
		}
		v.n.Add(1)
		total.Add(1)
		if p := v.check(r, body, rec); p != "" {
			v.errorf("%s %s → %d: %s\n  request body: %s\n  response (%s): %s", r.Method, r.URL.RequestURI(), rec.code, p,
				snippet(body), rec.Header().Get("Content-Type"), snippet(rec.body.Bytes()))
		}
	})
}

// check returns what is wrong with the exchange, "" when nothing.
func (v *Validator) check(r *http.Request, body []byte, rec *recorder) string {
	method := r.Method
	head := method == http.MethodHead
	if head {
		method = http.MethodGet // answered as GET, without a body
	}
	item := v.doc.Paths.Value(r.URL.Path)
	if item == nil {
		return v.checkError(rec, http.StatusNotFound, head, "a path the document does not list")
	}
	op := item.GetOperation(method)
	if op == nil {
		if rec.Header().Get("Allow") == "" {
			return "405 without Allow"
		}
		return v.checkError(rec, http.StatusMethodNotAllowed, head, "a method the document does not list on "+r.URL.Path)
	}
	seen.Store(method+" "+r.URL.Path, struct{}{})
	route := &routers.Route{Spec: v.doc, Path: r.URL.Path, PathItem: item, Method: method, Operation: op}
	ctx := context.Background()
	vreq := r.Clone(ctx)
	vreq.Method = method
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	vreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	dropEmpty(vreq, op)
	if rb := op.RequestBody; rb != nil && rb.Value != nil && len(body) > 0 && vreq.Header.Get("Content-Type") == "" && len(rb.Value.Content) == 1 {
		for ct := range rb.Value.Content {
			vreq.Header.Set("Content-Type", ct)
		}
	}
	sniffed, _ := op.Extensions["x-ledger-sniffed-body"].(bool)
	in := &openapi3filter.RequestValidationInput{Request: vreq, Route: route, Options: &openapi3filter.Options{
		AuthenticationFunc: authenticate, SkipSettingDefaults: true, ExcludeRequestBody: sniffed,
	}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && rec.code < 400 {
		return "the document refuses the request, the server accepted it: " + err.Error()
	}

	resp := op.Responses.Status(rec.code)
	if resp == nil || resp.Value == nil {
		return "status " + strconv.Itoa(rec.code) + " is not documented for " + method + " " + r.URL.Path
	}
	ct := rec.Header().Get("Content-Type")
	if !head && len(resp.Value.Content) > 0 && resp.Value.Content.Get(ct) == nil {
		return fmt.Sprintf("Content-Type %q is not documented for %d", ct, rec.code)
	}
	in.Options = &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: head || !isJSON(ct) || rec.truncated}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.code, Header: rec.Header(),
		Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), Options: in.Options,
	})
	if err != nil {
		return err.Error()
	}
	return ""
}

// dropEmpty removes from r the parameters of op given empty, which the
// server takes as absent (the document's info says so): ?org= and an
// empty X-Org-Slug.
func dropEmpty(r *http.Request, op *openapi3.Operation) {
	q := r.URL.Query()
	changed := false
	for _, p := range op.Parameters {
		if p.Value == nil {
			continue
		}
		switch p.Value.In {
		case openapi3.ParameterInQuery:
			if vs, ok := q[p.Value.Name]; ok && len(vs) == 1 && vs[0] == "" {
				q.Del(p.Value.Name)
				changed = true
			}
		case openapi3.ParameterInHeader:
			if vs := r.Header.Values(p.Value.Name); len(vs) == 1 && vs[0] == "" {
				r.Header.Del(p.Value.Name)
			}
		}
	}
	if changed {
		r.URL.RawQuery = q.Encode()
	}
}

// checkError checks an answer outside the document's operations: the
// status want with the error body of that status.
func (v *Validator) checkError(rec *recorder, want int, head bool, what string) string {
	if rec.code != want {
		return fmt.Sprintf("%s must be answered %d", what, want)
	}
	if head {
		return ""
	}
	ref := v.doc.Components.Schemas["Error"+strconv.Itoa(want)]
	var val any
	if err := json.Unmarshal(rec.body.Bytes(), &val); err != nil {
		return "the error body is not JSON: " + err.Error()
	}
	if err := ref.Value.VisitJSON(val, openapi3.EnableJSONSchema2020()); err != nil {
		return "the error body: " + err.Error()
	}
	return ""
}

// authenticate accepts what reaches the server's token check: one
// Authorization header with the Bearer scheme and a token. Whether the
// token is known is the server's to say (401).
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("unexpected security scheme %s %s", in.SecurityScheme.Type, in.SecurityScheme.Scheme)
	}
	h := in.RequestValidationInput.Request.Header.Values("Authorization")
	if len(h) != 1 {
		return fmt.Errorf("%d Authorization headers", len(h))
	}
	if tok, ok := bearer.Parse(h[0]); !ok || strings.TrimSpace(tok) == "" {
		return fmt.Errorf("no bearer token")
	}
	return nil
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func snippet(b []byte) string {
	if len(b) > 400 {
		return strconv.Quote(string(b[:400])) + "…"
	}
	return strconv.Quote(string(b))
}

// recorder passes an answer through and keeps its status and body.
type recorder struct {
	http.ResponseWriter
	code      int
	wrote     bool
	body      bytes.Buffer
	truncated bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote && code >= 200 {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wrote {
		r.code, r.wrote = http.StatusOK, true
	}
	if r.body.Len()+len(p) > maxBody {
		r.truncated = true
	} else {
		r.body.Write(p)
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
