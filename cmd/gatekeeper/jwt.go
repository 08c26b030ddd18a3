package main

import (
	"context"
	"log/slog"
	"strings"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/jwtorg"
	"github.com/licenseledger/ledger/internal/cli"
)

// tokenVerifier builds jwt mode's verifier from the --jwt-* flags: nil in
// the other org modes, where those flags are a usage error (they would
// silently do nothing). The JWKS is loaded now: a gatekeeper that cannot
// verify a single token does not start.
func (c *gatekeeperCmd) tokenVerifier(ctx context.Context, src gatekeeper.OrgSource, log *slog.Logger) (*jwtorg.Verifier, error) {
	if src.Kind() != gatekeeper.OrgFromJWT {
		for _, f := range []struct{ flag, value string }{{"--jwt-keys", c.JWTKeys}, {"--jwt-issuer", c.JWTIssuer},
			{"--jwt-audience", c.JWTAudience}, {"--jwt-cookie", c.JWTCookie}} {
			if f.value != "" {
				return nil, cli.Usage("%s is for --org-from jwt:CLAIM; the org source is %s", f.flag, src)
			}
		}
		return nil, nil
	}
	for _, f := range []struct{ flag, value, what string }{{"--jwt-keys", c.JWTKeys, "FILE_OR_URL: the JWKS of the platform's token issuer"},
		{"--jwt-issuer", c.JWTIssuer, "ISSUER: the iss its tokens carry"}, {"--jwt-audience", c.JWTAudience, "AUDIENCE: the aud its tokens carry"}} {
		if f.value == "" {
			return nil, cli.Usage("--org-from %s needs %s %s", src, f.flag, f.what)
		}
	}
	v, err := jwtorg.New(ctx, jwtorg.Config{Keys: c.JWTKeys, Issuer: c.JWTIssuer, Audience: c.JWTAudience,
		Claim: src.Claim(), Logger: log.With("component", "jwt")})
	if err != nil {
		if strings.HasPrefix(c.JWTKeys, "http://") || strings.HasPrefix(c.JWTKeys, "https://") {
			return nil, &cli.Error{Code: cli.ExitUnavailable, Err: err}
		}
		return nil, cli.Usage("--jwt-keys: %v", err)
	}
	log.Info("org from verified tokens", "claim", src.Claim(), "jwks", c.JWTKeys, "issuer", c.JWTIssuer,
		"audience", c.JWTAudience, "cookie", c.JWTCookie)
	return v, nil
}
