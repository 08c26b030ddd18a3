package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/testenv/openapitest"
)

// TestMain says how much of the API the package's traffic exercised
// against the OpenAPI document (startAPI checks every request).
func TestMain(m *testing.M) {
	code := m.Run()
	fmt.Println(openapitest.Summary())
	os.Exit(code)
}

// The document is OpenAPI 3.1 that kin-openapi loads and validates, and
// GET /api/openapi.json serves it exactly, to a caller without a token.
func TestOpenAPIServedAndValid(t *testing.T) {
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	s := startAPI(t, httpapi.Config{})
	for _, tok := range []string{"", tokOperator} {
		req, _ := http.NewRequest("GET", s.url+"/api/openapi.json", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, httpapi.OpenAPI) {
			t.Errorf("token %q: %d %s, %d bytes (the embedded document has %d)", tok, resp.StatusCode,
				resp.Header.Get("Content-Type"), len(body), len(httpapi.OpenAPI))
		}
	}
}

// Every path and method of the route table is in the document, and the
// document has no other: a new endpoint needs its description.
func TestOpenAPICoversTheRouteTable(t *testing.T) {
	doc, err := openapitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.New(httpapi.Config{Tokens: auth.NewTokens(auth.NewSet(nil)), Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.DiscardHandler)})
	table := srv.RouteMethods()
	documented := map[string][]string{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[path] = append(documented[path], strings.ToUpper(method))
		}
		slices.Sort(documented[path])
	}
	for path, methods := range table {
		if !slices.Equal(documented[path], methods) {
			t.Errorf("%s: the route table has %v, the document %v", path, methods, documented[path])
		}
	}
	for path, methods := range documented {
		if _, ok := table[path]; !ok {
			t.Errorf("%s %v: documented, not in the route table", path, methods)
		}
	}
	if len(table) < 20 {
		t.Errorf("only %d routes", len(table))
	}
}
