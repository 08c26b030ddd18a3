// Package fasthash is a seeded, non-cryptographic string hash for the
// direct-mapped caches of the hot paths (the gate's routes and org
// entries, jwtorg's verified tokens), in the manner of wyhash: a few word
// loads folded by 64×64→128-bit multiplications. It costs a few
// nanoseconds where hash/maphash costs several calls. A collision only
// sends a lookup to its slow path: the caches compare full keys.
package fasthash

import (
	"math/bits"
	"math/rand/v2"
)

// Mixing constants; callers combining hashes multiply by them.
const (
	K1 = 0xe7037ed1a0b428db
	K2 = 0x8ebc6af09c88c6e3
)

// String hashes all of s.
func String(s string, seed uint64) uint64 {
	n := len(s)
	var a, b uint64
	switch {
	case n > 16:
		i := 0
		for ; i+16 < n; i += 16 {
			seed = mix(le64(s, i)^K1, le64(s, i+8)^seed)
		}
		a, b = le64(s, n-16), le64(s, n-8)
	case n >= 8:
		a, b = le64(s, 0), le64(s, n-8)
	case n >= 4:
		a, b = uint64(le32(s, 0)), uint64(le32(s, n-4))
	case n > 0:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	return mix(K2^uint64(n), mix(a^K1, b^seed))
}

// Tail hashes the length of s and its last 16 bytes only: for keys whose
// tail tells them apart (a signed token ends in signature bytes), so that
// a key of hundreds of bytes costs no more than a short one.
func Tail(s string, seed uint64) uint64 {
	if len(s) <= 16 {
		return String(s, seed)
	}
	n := len(s)
	return mix(K2^uint64(n), mix(le64(s, n-16)^K1, le64(s, n-8)^seed))
}

// NewSeed is a random seed, one per cache.
func NewSeed() uint64 { return rand.Uint64() | 1 }

// mix folds the 128-bit product of a and b.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// le64 and le32 read s[i:] little-endian (the compiler makes them one
// load each).
func le64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string, i int) uint32 {
	s = s[i : i+4]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}
