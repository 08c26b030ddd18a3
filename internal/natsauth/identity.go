package natsauth

import (
	"bytes"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Identity is an nkey user acting in a Role. Seed is secret.
type Identity struct {
	Role      Role
	Seed      []byte
	PublicKey string
}

// GenerateIdentity creates a fresh nkey user for role.
func GenerateIdentity(role Role) (Identity, error) {
	if !role.Valid() {
		return Identity{}, fmt.Errorf("natsauth: unknown role %q", role)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: generate %s key: %w", role, err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: generate %s key: %w", role, err)
	}
	return IdentityFromSeed(role, seed)
}

// IdentityFromSeed checks that seed is an nkey user seed and derives its
// public key. Other key types (account, operator, server) are rejected so a
// misplaced file cannot silently become a client identity.
func IdentityFromSeed(role Role, seed []byte) (Identity, error) {
	kp, err := userKeyPair(seed)
	if err != nil {
		return Identity{}, err
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: %s seed: %w", role, err)
	}
	return Identity{Role: role, Seed: bytes.Clone(seed), PublicKey: pub}, nil
}

func userKeyPair(seed []byte) (nkeys.KeyPair, error) {
	// The base32 decoder skips line breaks; refusing them here keeps stray
	// bytes out of Identity.Seed.
	if i := bytes.IndexFunc(seed, notBase32); i >= 0 {
		return nil, fmt.Errorf("natsauth: invalid nkey seed: unexpected byte %q at offset %d", seed[i], i)
	}
	prefix, _, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("natsauth: invalid nkey seed: %w", err)
	}
	if prefix != nkeys.PrefixByteUser {
		return nil, fmt.Errorf("natsauth: nkey seed is a %s key, want a user key", prefix)
	}
	return nkeys.FromSeed(seed)
}

// ConnectOption authenticates a NATS connection as the user owning seed by
// signing the server's nonce.
func ConnectOption(seed []byte) (nats.Option, error) {
	kp, err := userKeyPair(seed)
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}

func notBase32(r rune) bool {
	return (r < 'A' || r > 'Z') && (r < '2' || r > '7')
}
