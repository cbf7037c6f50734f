package secagg

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Shamir secret sharing over GF(p), p = 2^255 − 19. Secrets are 255-bit
// values: self-mask seeds are drawn below p, and X25519 private keys are
// generated clamped (so below 2^255) and redrawn in the negligible case
// that they are ≥ p. The share of a client
// is the polynomial evaluated at its id, so ids must be nonzero.

// fieldBytes is the size of an encoded field element (big-endian).
const fieldBytes = 32

// fieldP is 2^255 − 19.
var fieldP = func() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 255)
	return p.Sub(p, big.NewInt(19))
}()

// errRNG is returned when the random source keeps producing values outside
// the field, which only a broken source does.
var errRNG = errors.New("secagg: random source produced no usable field element")

// randFieldElement draws a uniform element of GF(p) from rng.
func randFieldElement(rng io.Reader) (*big.Int, error) {
	var buf [fieldBytes]byte
	// Each draw fails with probability 19/2^255; 8 failures mean a broken
	// source.
	for range 8 {
		if _, err := io.ReadFull(rng, buf[:]); err != nil {
			return nil, fmt.Errorf("secagg: read random source: %w", err)
		}
		buf[0] &= 0x7f
		v := new(big.Int).SetBytes(buf[:])
		if v.Cmp(fieldP) < 0 {
			return v, nil
		}
	}
	return nil, errRNG
}

// fieldValid reports whether b encodes an element of GF(p).
func fieldValid(b *[fieldBytes]byte) bool {
	return new(big.Int).SetBytes(b[:]).Cmp(fieldP) < 0
}

// fieldEncode writes v (which must be in [0, p)) as 32 big-endian bytes.
func fieldEncode(v *big.Int) [fieldBytes]byte {
	var out [fieldBytes]byte
	v.FillBytes(out[:])
	return out
}

// shamirSplit returns the shares of secret for the holders xs with
// threshold t: any t shares rebuild the secret, fewer reveal nothing.
func shamirSplit(secret *big.Int, t int, xs []uint32, rng io.Reader) ([][fieldBytes]byte, error) {
	if t < 1 || t > len(xs) {
		return nil, fmt.Errorf("secagg: shamir threshold %d for %d holders", t, len(xs))
	}
	coeffs := make([]*big.Int, t)
	coeffs[0] = secret
	for k := 1; k < t; k++ {
		c, err := randFieldElement(rng)
		if err != nil {
			return nil, err
		}
		coeffs[k] = c
	}
	out := make([][fieldBytes]byte, len(xs))
	y, x := new(big.Int), new(big.Int)
	for i, xi := range xs {
		if xi == 0 {
			return nil, fmt.Errorf("secagg: shamir share at x = 0 would reveal the secret")
		}
		x.SetUint64(uint64(xi))
		y.Set(coeffs[t-1])
		for k := t - 2; k >= 0; k-- {
			y.Mul(y, x)
			y.Add(y, coeffs[k])
			y.Mod(y, fieldP)
		}
		out[i] = fieldEncode(y)
	}
	return out, nil
}

// lagrangeAtZero returns the Lagrange coefficients λ_i with
// f(0) = Σ λ_i f(x_i) for distinct nonzero xs.
func lagrangeAtZero(xs []uint32) ([]*big.Int, error) {
	out := make([]*big.Int, len(xs))
	num, den, tmp := new(big.Int), new(big.Int), new(big.Int)
	for i, xi := range xs {
		num.SetInt64(1)
		den.SetInt64(1)
		for j, xj := range xs {
			if i == j {
				continue
			}
			if xi == xj {
				return nil, fmt.Errorf("secagg: shamir holders repeat x = %d", xi)
			}
			// λ_i = Π x_j / (x_j − x_i)
			num.Mul(num, tmp.SetUint64(uint64(xj)))
			num.Mod(num, fieldP)
			tmp.SetInt64(int64(xj) - int64(xi))
			den.Mul(den, tmp)
			den.Mod(den, fieldP)
		}
		inv := new(big.Int).ModInverse(den, fieldP)
		if inv == nil {
			return nil, fmt.Errorf("secagg: shamir holders are not invertible")
		}
		out[i] = inv.Mul(inv, num).Mod(inv, fieldP)
	}
	return out, nil
}

// shamirCombine rebuilds a secret from shares ys held at xs with the
// Lagrange coefficients lambda of xs.
func shamirCombine(lambda []*big.Int, ys [][fieldBytes]byte) *big.Int {
	sum, term := new(big.Int), new(big.Int)
	for i := range ys {
		term.SetBytes(ys[i][:])
		term.Mul(term, lambda[i])
		sum.Add(sum, term)
	}
	return sum.Mod(sum, fieldP)
}
