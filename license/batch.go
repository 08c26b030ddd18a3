package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"

	"filippo.io/edwards25519"
)

// BatchMax is the most licenses VerifyBatch checks in one equation; it
// splits larger inputs.
const BatchMax = 64

// VerifyBatch is Verify for many inputs at once, with the same results,
// the signatures checked together: one random linear combination of the
// Ed25519 verification equations (the standard batch equation, with the
// cofactor), well under half the work per signature of checking them one
// by one when they share a key. When the combination fails, each input is
// verified on its own, so every result, and every error, is exactly
// Verify's.
//
// A batch accepts what single verification accepts. It may also accept a
// signature whose R point carries a small-order component, which single
// verification refuses: such a signature can only be made with the
// vendor's private key, so it is no forgery, but a reader that must agree
// bit for bit with single verification on a vendor's malformed signatures
// uses Verify.
func (r *Ring) VerifyBatch(inputs [][]byte, expects []Expect) ([]*License, []error) {
	ls, errs := make([]*License, len(inputs)), make([]error, len(inputs))
	for start := 0; start < len(inputs); start += BatchMax {
		end := min(start+BatchMax, len(inputs))
		r.verifyBatch(inputs[start:end], expects[start:end], ls[start:end], errs[start:end])
	}
	return ls, errs
}

func (r *Ring) verifyBatch(inputs [][]byte, expects []Expect, ls []*License, errs []error) {
	var signed []int // inputs with a trusted kid: their signatures are batched
	var pubs []ed25519.PublicKey
	var points []*edwards25519.Point
	for i, in := range inputs {
		l, err := Decode(in)
		if err != nil {
			errs[i] = err
			continue
		}
		ls[i] = l
		pub, ok := r.keys[l.Kid]
		if !ok {
			errs[i] = r.Check(l, expects[i]) // unknown_key
			continue
		}
		signed, pubs, points = append(signed, i), append(pubs, pub), append(points, r.points[l.Kid])
	}
	if len(signed) > 1 && batchValid(pubs, points, ls, signed) {
		for _, i := range signed {
			errs[i] = checkClaims(ls[i], expects[i])
		}
		return
	}
	for _, i := range signed {
		errs[i] = r.Check(ls[i], expects[i])
	}
}

// batchValid reports whether every signature of ls[idx[j]] verifies under
// pubs[j] (decoded as keyPoints[j] when given: a ring decodes its keys once),
// checked together: with random 128-bit z_j,
// [8](−(Σ z_j·S_j)·B + Σ z_j·R_j + Σ (z_j·k_j)·A_j) is the identity, where
// k_j = SHA-512(R_j ‖ A_j ‖ M_j). The terms of one public key are summed
// into one, (Σ z_j·k_j)·A (a vendor signs every license with a few keys),
// and each key is decoded once. Anything single verification would
// refuse outright (a key or R that does not decode, an R not in canonical
// form, S not below the group order) fails the batch.
func batchValid(pubs []ed25519.PublicKey, keyPoints []*edwards25519.Point, ls []*License, idx []int) bool {
	n := len(idx)
	scalars := make([]*edwards25519.Scalar, 0, n+2)
	points := make([]*edwards25519.Point, 0, n+2)
	type keyTerm struct {
		pub ed25519.PublicKey
		A   *edwards25519.Point
		zk  *edwards25519.Scalar // Σ z_j·k_j of the signatures under pub
	}
	var keys []keyTerm
	sumS := edwards25519.NewScalar()
	var zBuf [32]byte
	var digest [sha512.Size]byte
	var err error
	for j, i := range idx {
		l, pub := ls[i], pubs[j]
		sig := l.Signature()
		if len(sig) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize {
			return false
		}
		key := -1
		for t := range keys {
			if bytes.Equal(keys[t].pub, pub) {
				key = t
				break
			}
		}
		if key < 0 {
			A := (*edwards25519.Point)(nil)
			if j < len(keyPoints) {
				A = keyPoints[j]
			}
			if A == nil {
				if A, err = new(edwards25519.Point).SetBytes(pub); err != nil {
					return false
				}
			}
			key, keys = len(keys), append(keys, keyTerm{pub, A, edwards25519.NewScalar()})
		}
		R, err := new(edwards25519.Point).SetBytes(sig[:32])
		if err != nil || !canonical(sig[:32]) {
			return false
		}
		S, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
		if err != nil {
			return false
		}
		h := sha512.New()
		h.Write(sig[:32])
		h.Write(pub)
		h.Write(l.SignedBytes())
		k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
		if err != nil {
			return false
		}
		if _, err := rand.Read(zBuf[:16]); err != nil {
			return false
		}
		z, err := edwards25519.NewScalar().SetCanonicalBytes(zBuf[:]) // < 2^128: canonical
		if err != nil {
			return false
		}
		sumS.MultiplyAdd(z, S, sumS)
		keys[key].zk.MultiplyAdd(z, k, keys[key].zk)
		scalars = append(scalars, z)
		points = append(points, R)
	}
	for _, t := range keys {
		scalars = append(scalars, t.zk)
		points = append(points, t.A)
	}
	scalars = append(scalars, edwards25519.NewScalar().Negate(sumS))
	points = append(points, edwards25519.NewGeneratorPoint())
	p := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return p.MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}

// canonical reports whether b, an encoding SetBytes accepted, is the
// canonical one, the one the point's Bytes gives back (single verification
// refuses any other R): y below the field's order p = 2^255 - 19, and no
// sign bit on x = 0 (y = 1 or y = p - 1). Read from the bytes, it saves
// Bytes' field inversion per signature.
func canonical(b []byte) bool {
	sign := b[31]&0x80 != 0
	y := [32]byte(b)
	y[31] &= 0x7f
	// y >= p: 0x7f, then 30 bytes of 0xff, then a low byte >= 0xed.
	high := y[31] == 0x7f
	for i := 30; high && i >= 1; i-- {
		high = y[i] == 0xff
	}
	if high && y[0] >= 0xed {
		return false
	}
	if !sign {
		return true
	}
	one := y == [32]byte{0: 1}
	minusOne := high && y[0] == 0xec
	return !one && !minusOne
}
