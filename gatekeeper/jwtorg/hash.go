package jwtorg

import (
	"math/bits"
	"math/rand/v2"
)

// tokenHash places a token in the cache: a seeded mix of its length and
// its last 16 bytes, which are signature bytes in any token that can be
// cached (only verified tokens are stored), so they differ between any
// two tokens an issuer signs. Hashing all of a token of several hundred
// bytes would cost more than the rest of a cached lookup. A collision only
// costs a verification: the cache compares the full token, and a
// forged token made to collide with a cached one is never stored, so it
// evicts nothing.
func tokenHash(t string, seed uint64) uint64 {
	n := len(t)
	var a, b uint64
	if n >= 16 {
		a, b = le64(t, n-16), le64(t, n-8)
	} else {
		for i := range n {
			a = a<<8 | uint64(t[i])
		}
	}
	return hashMix(hashK2^uint64(n), hashMix(a^hashK1, b^seed))
}

const (
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
)

// hashMix folds the 128-bit product of a and b (as wyhash does).
func hashMix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// le64 reads s[i:i+8] little-endian (one load).
func le64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// newHashSeed is a random seed for tokenHash, one per Verifier.
func newHashSeed() uint64 { return rand.Uint64() | 1 }
