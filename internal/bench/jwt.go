package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/jwtorg"
)

const (
	benchIssuer   = "https://platform.bench"
	benchAudience = "platform"
)

// jwtGate is ge's gate in jwt mode: the org from an RS256 token of a
// typical platform size (about 800 bytes), verified against a JWKS file,
// beside the bearer header that carries the token.
func (r *runner) jwtGate(ctx context.Context, ge *gateEnv) (*gatekeeper.Gate, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "ledger-bench-jwt-")
	if err != nil {
		return nil, "", err
	}
	r.defer_(func() { os.RemoveAll(dir) })
	b64 := base64.RawURLEncoding
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
		"n": b64.EncodeToString(key.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		return nil, "", err
	}
	v, err := jwtorg.New(ctx, jwtorg.Config{Keys: path, Issuer: benchIssuer, Audience: benchAudience, Claim: "org", Logger: r.log})
	if err != nil {
		return nil, "", err
	}
	now := time.Now().Unix()
	header, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "bench"})
	claims, _ := json.Marshal(map[string]any{"iss": benchIssuer, "aud": benchAudience, "sub": "3f2c9a1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
		"org": benchOrg, "iat": now, "exp": now + 3600, "name": "Alex Example", "email": "alex@acme.example",
		"roles": []string{"member", "billing"}, "sid": "8b1f6e2a-93c4-4d7e-b5a0-6f1e2d3c4b5a"})
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return nil, "", err
	}
	token := input + "." + b64.EncodeToString(sig)
	src, err := gatekeeper.ParseOrgSource("jwt:org")
	if err != nil {
		return nil, "", err
	}
	rules, err := ge.rules()
	if err != nil {
		return nil, "", err
	}
	g, err := gatekeeper.New(ge.fol, gatekeeper.Config{OrgSource: src, Tokens: v, Features: rules})
	if err != nil {
		return nil, "", err
	}
	if _, err := v.Org(token); err != nil {
		return nil, "", fmt.Errorf("benchmark token refused: %w", err)
	}
	return g, "Bearer " + token, nil
}
