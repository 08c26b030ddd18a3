package httpapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of this API, served at
// /api/openapi.json. It lives here, beside the handlers, so the binary
// embeds the one copy the tests check the server's traffic against.
//
//go:embed openapi.json
var OpenAPI []byte

// openAPI answers the document to anyone: it describes the API and holds
// no secret, and client generators fetch it without a token.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI)
}
