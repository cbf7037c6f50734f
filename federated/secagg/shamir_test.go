package secagg

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestShamirRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rng := testRNG(11, 0)
	for _, tc := range []struct{ n, t int }{{2, 2}, {3, 2}, {5, 3}, {10, 6}, {40, 21}, {7, 7}} {
		secret, err := randFieldElement(rng)
		if err != nil {
			t.Fatal(err)
		}
		xs := make([]uint32, tc.n)
		for i := range xs {
			xs[i] = uint32(3*i + 1 + r.IntN(3)) // distinct, nonzero, not consecutive
		}
		shares, err := shamirSplit(secret, tc.t, xs, rng)
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 5 {
			perm := r.Perm(tc.n)
			for _, k := range []int{tc.t, tc.n} {
				sub := perm[:k]
				sx := make([]uint32, k)
				sy := make([][fieldBytes]byte, k)
				for i, j := range sub {
					sx[i], sy[i] = xs[j], shares[j]
				}
				lambda, err := lagrangeAtZero(sx)
				if err != nil {
					t.Fatal(err)
				}
				if got := shamirCombine(lambda, sy); got.Cmp(secret) != 0 {
					t.Fatalf("n=%d t=%d trial %d: %d shares rebuild %x, want %x", tc.n, tc.t, trial, k, got, secret)
				}
			}
			// t−1 shares interpolate to something else (with overwhelming
			// probability; the inputs are fixed by the seeds).
			sub := perm[:tc.t-1]
			sx := make([]uint32, len(sub))
			sy := make([][fieldBytes]byte, len(sub))
			for i, j := range sub {
				sx[i], sy[i] = xs[j], shares[j]
			}
			lambda, err := lagrangeAtZero(sx)
			if err != nil {
				t.Fatal(err)
			}
			if got := shamirCombine(lambda, sy); got.Cmp(secret) == 0 {
				t.Fatalf("n=%d t=%d: %d shares rebuilt the secret", tc.n, tc.t, tc.t-1)
			}
		}
	}
}

func TestShamirRejects(t *testing.T) {
	rng := testRNG(12, 0)
	s := big.NewInt(42)
	if _, err := shamirSplit(s, 3, []uint32{1, 2}, rng); err == nil {
		t.Error("split with threshold above the holder count succeeded")
	}
	if _, err := shamirSplit(s, 0, []uint32{1, 2}, rng); err == nil {
		t.Error("split with threshold 0 succeeded")
	}
	if _, err := shamirSplit(s, 2, []uint32{0, 2}, rng); err == nil {
		t.Error("split with a share at x = 0 succeeded")
	}
	if _, err := lagrangeAtZero([]uint32{1, 2, 1}); err == nil {
		t.Error("Lagrange coefficients with repeated x succeeded")
	}
}

func TestX25519FieldRoundTrip(t *testing.T) {
	rng := testRNG(13, 0)
	for range 20 {
		k, v, err := newX25519Key(rng)
		if err != nil {
			t.Fatal(err)
		}
		if v.Cmp(fieldP) >= 0 {
			t.Fatalf("scalar %x not below p", v)
		}
		k2, err := x25519FromField(v)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Equal(k2) {
			t.Fatal("key rebuilt from its field element differs")
		}
		// Any other value near it is refused or gives another key.
		for _, d := range []int64{1, 2, 7, 8, -8} {
			w := new(big.Int).Add(v, big.NewInt(d))
			if k3, err := x25519FromField(w); err == nil && k3.PublicKey().Equal(k.PublicKey()) {
				t.Fatalf("scalar + %d gives the same public key", d)
			}
		}
	}
}
