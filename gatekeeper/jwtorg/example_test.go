package jwtorg_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/gatekeeper/jwtorg"
)

// A middleware that takes the org from the platform's access token (or
// its session cookie) and hands it on in the request's context.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	v, err := jwtorg.New(ctx, jwtorg.Config{
		Keys:     "https://id.example.com/.well-known/jwks.json",
		Issuer:   "https://id.example.com/",
		Audience: "https://app.example.com",
		Claim:    "https://app.example.com/org",
	})
	if err != nil {
		log.Fatal(err) // names the URL and the cause
	}
	go v.Run(ctx) // refreshes the JWKS by its cache headers
	prometheus.MustRegister(v.Collector())

	type orgKey struct{}
	middleware := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			org, err := "", jwtorg.ErrInvalid
			if tok, ok := jwtorg.TokenFrom(r.Header, "session"); ok {
				org, err = v.OrgContext(r.Context(), tok)
			}
			switch {
			case errors.Is(err, jwtorg.ErrNoClaim):
				http.Error(w, "org_required", http.StatusForbidden)
			case err != nil:
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				http.Error(w, "org_unauthenticated", http.StatusUnauthorized)
			default: // org is not validated yet: check it against the slug rules
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), orgKey{}, org)))
			}
		})
	}
	_ = middleware
}
