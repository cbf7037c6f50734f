package secagg

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

func testConfig(n, t, l int) Config {
	return Config{N: n, Threshold: t, VectorLen: l, Clip: 1, Scale: 1 << 16, Session: []byte("round-42")}
}

func TestAggregateWithDropouts(t *testing.T) {
	sparse := testConfig(30, 5, 257)
	sparse.Neighbours = 8
	sparse.GraphSeed = [32]byte{1, 2, 3}

	tests := []struct {
		name string
		cfg  Config
		drop map[uint32]Round
	}{
		{"10 clients, no dropouts", testConfig(10, 6, 1000), nil},
		{"1 dropout after round 1", testConfig(10, 6, 1000), map[uint32]Round{4: RoundMaskedInputCollection}},
		{"3 dropouts after round 1", testConfig(10, 6, 1000), map[uint32]Round{1: RoundMaskedInputCollection, 5: RoundMaskedInputCollection, 10: RoundMaskedInputCollection}},
		{"1 dropout after round 2", testConfig(10, 6, 1000), map[uint32]Round{7: RoundUnmasking}},
		{"3 dropouts after round 2", testConfig(10, 6, 1000), map[uint32]Round{2: RoundUnmasking, 3: RoundUnmasking, 9: RoundUnmasking}},
		{"dropouts in every round", testConfig(10, 6, 1000), map[uint32]Round{
			1: RoundAdvertiseKeys, 2: RoundShareKeys, 3: RoundMaskedInputCollection, 4: RoundUnmasking,
		}},
		{"4 dropouts, threshold exactly met", testConfig(10, 6, 64), map[uint32]Round{
			6: RoundMaskedInputCollection, 7: RoundMaskedInputCollection, 8: RoundUnmasking, 9: RoundUnmasking,
		}},
		{"two clients", testConfig(2, 2, 5), nil},
		{"automatic scale", Config{N: 10, Threshold: 6, VectorLen: 100, Clip: 4}, map[uint32]Round{2: RoundMaskedInputCollection}},
		{"sparse graph, no dropouts", sparse, nil},
		{"sparse graph, dropouts", sparse, map[uint32]Round{
			3: RoundShareKeys, 11: RoundMaskedInputCollection, 12: RoundMaskedInputCollection, 20: RoundUnmasking, 29: RoundUnmasking,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg, 1, tc.drop)
			res, err := h.run()
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			var wantIncluded, wantDropped []uint32
			for id := uint32(1); int(id) <= tc.cfg.N; id++ {
				switch d, ok := tc.drop[id]; {
				case !ok || d >= RoundUnmasking:
					wantIncluded = append(wantIncluded, id)
				case d == RoundMaskedInputCollection:
					wantDropped = append(wantDropped, id)
				}
			}
			if !slices.Equal(res.Included, wantIncluded) || res.Count != len(wantIncluded) {
				t.Errorf("included %v (count %d), want %v", res.Included, res.Count, wantIncluded)
			}
			if !slices.Equal(res.Dropped, wantDropped) {
				t.Errorf("dropped %v, want %v", res.Dropped, wantDropped)
			}
			exact, plain := h.expected(wantIncluded)
			tol := float64(res.Count)*0.5/tc.cfg.scale() + 1e-9
			for i := range res.Sum {
				if res.Sum[i] != exact[i] {
					t.Fatalf("sum[%d] = %v, want exactly %v (fixed-point sum)", i, res.Sum[i], exact[i])
				}
				if d := math.Abs(res.Sum[i] - plain[i]); d > tol {
					t.Fatalf("sum[%d] = %v, float sum %v: error %v beyond quantisation bound %v", i, res.Sum[i], plain[i], d, tol)
				}
			}
			mean := res.Mean()
			if got, want := mean[0], res.Sum[0]/float64(res.Count); got != want {
				t.Errorf("mean[0] = %v, want %v", got, want)
			}
			if h.srv.Round() != RoundDone {
				t.Errorf("server round %v after Finish, want Done", h.srv.Round())
			}
		})
	}
}

func TestAbortWhenFewerThanThreshold(t *testing.T) {
	drops := func(r Round, ids ...uint32) map[uint32]Round {
		m := map[uint32]Round{}
		for _, id := range ids {
			m[id] = r
		}
		return m
	}
	tests := []struct {
		name    string
		drop    map[uint32]Round
		abortAt Round
	}{
		{"round 0", drops(RoundAdvertiseKeys, 1, 2, 3, 4, 5), RoundAdvertiseKeys},
		{"round 1", drops(RoundShareKeys, 2, 4, 6, 8, 10), RoundShareKeys},
		{"round 2", drops(RoundMaskedInputCollection, 1, 3, 5, 7, 9), RoundMaskedInputCollection},
		{"spread over rounds", map[uint32]Round{1: RoundAdvertiseKeys, 2: RoundShareKeys, 3: RoundShareKeys, 4: RoundMaskedInputCollection, 5: RoundMaskedInputCollection}, RoundMaskedInputCollection},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig(10, 6, 16), 2, tc.drop)
			steps := []func() error{h.advertise, h.share, h.mask}
			for r, step := range steps {
				err := step()
				if Round(r) < tc.abortAt {
					if err != nil {
						t.Fatalf("round %d: %v", r, err)
					}
					continue
				}
				if !errors.Is(err, ErrTooFewClients) {
					t.Fatalf("round %d: err = %v, want ErrTooFewClients", r, err)
				}
				break
			}
			if h.srv.Round() != RoundAborted {
				t.Fatalf("server round %v, want Aborted", h.srv.Round())
			}
			if _, err := h.srv.Finish(); !errors.Is(err, ErrAborted) {
				t.Errorf("Finish after abort: %v, want ErrAborted", err)
			}
			if err := h.srv.HandleAdvertiseKeys(&AdvertiseKeys{From: 1}); !errors.Is(err, ErrAborted) {
				t.Errorf("HandleAdvertiseKeys after abort: %v, want ErrAborted", err)
			}
		})
	}
}

func TestFinishWaitsForEnoughShares(t *testing.T) {
	// Four clients answer round 3 (threshold 6): Finish must refuse and
	// keep the round open; after two more answers it succeeds.
	drop := map[uint32]Round{5: RoundUnmasking, 6: RoundUnmasking, 7: RoundUnmasking, 8: RoundUnmasking, 9: RoundUnmasking, 10: RoundUnmasking}
	h := newHarness(t, testConfig(10, 6, 32), 3, drop)
	if err := h.advertise(); err != nil {
		t.Fatal(err)
	}
	if err := h.share(); err != nil {
		t.Fatal(err)
	}
	if err := h.mask(); err != nil {
		t.Fatal(err)
	}
	h.unmask()
	if h.srv.Ready() {
		t.Fatal("Ready with 4 of 6 responses")
	}
	if _, err := h.srv.Finish(); !errors.Is(err, ErrTooFewClients) {
		t.Fatalf("Finish with 4 responses: %v, want ErrTooFewClients", err)
	}
	if h.srv.Round() != RoundUnmasking {
		t.Fatalf("server round %v after early Finish, want Unmasking", h.srv.Round())
	}
	for _, id := range []uint32{7, 9} {
		m, err := h.clients[id-1].Unmask(h.reqs[id])
		if err != nil {
			t.Fatal(err)
		}
		if err := h.srv.HandleUnmask(m); err != nil {
			t.Fatal(err)
		}
	}
	if !h.srv.Ready() {
		t.Fatal("not Ready with 6 of 6 responses")
	}
	res, err := h.srv.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	exact, _ := h.expected(res.Included)
	if res.Count != 10 || !slices.Equal(res.Sum, exact) {
		t.Fatalf("count %d, sum differs from the fixed-point sum", res.Count)
	}
}

func TestClientRefusesUnsafeUnmaskRequest(t *testing.T) {
	tests := []struct {
		name      string
		survivors []uint32
		want      error
	}{
		{"fewer than threshold", []uint32{1, 2, 3, 4, 5}, ErrTooFewClients},
		{"only itself", []uint32{1}, ErrTooFewClients},
		{"itself missing", []uint32{2, 3, 4, 5, 6, 7, 8}, ErrMalformed},
		{"unsorted", []uint32{2, 1, 3, 4, 5, 6, 7}, ErrMalformed},
		{"non-participant", []uint32{1, 2, 3, 4, 5, 6, 11}, ErrUnknownClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig(10, 6, 8), 4, nil)
			for _, step := range []func() error{h.advertise, h.share, h.mask} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			c := h.clients[0]
			resp, err := c.Unmask(&UnmaskRequest{To: 1, Survivors: tc.survivors})
			if !errors.Is(err, tc.want) || resp != nil {
				t.Fatalf("Unmask: %v, %v; want %v and no response", resp, err, tc.want)
			}
			if c.Round() != RoundAborted {
				t.Fatalf("client round %v, want Aborted", c.Round())
			}
			// An aborted client answers nothing, even a proper request.
			if _, err := c.Unmask(h.reqs[1]); !errors.Is(err, ErrAborted) {
				t.Fatalf("second Unmask: %v, want ErrAborted", err)
			}
		})
	}
}

func TestMaskedInputLooksUniform(t *testing.T) {
	// Client 1's input is all zeros, the most structured input there is.
	const l = 1 << 15
	h := newHarness(t, testConfig(10, 6, l), 5, map[uint32]Round{10: RoundMaskedInputCollection})
	clear(h.inputs[0])
	for _, step := range []func() error{h.advertise, h.share, h.mask} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	view := h.views[1]
	q := newQuantizer(h.cfg)
	deq := q.dequantize(view)
	var far int
	for _, v := range deq {
		if math.Abs(v) > 1/q.scale {
			far++
		}
	}
	if far < l*99/100 {
		t.Errorf("only %d of %d masked coordinates differ from the input beyond one quantisation step", far, l)
	}
	// Chi-squared over the top 4 bits (16 buckets, 15 degrees of freedom):
	// the 0.9999 quantile is about 44.3, so a uniform vector fails with
	// probability 1e-4, and this one is fixed by the seed.
	var buckets [16]float64
	var mean float64
	for _, v := range view {
		buckets[v>>28]++
		mean += float64(v) / (1 << 32)
	}
	mean /= l
	var chi2 float64
	for _, n := range buckets {
		d := n - l/16.0
		chi2 += d * d / (l / 16.0)
	}
	if chi2 > 44.3 {
		t.Errorf("chi-squared %v over 16 buckets: not uniform (buckets %v)", chi2, buckets)
	}
	// The mean of uniform values in [0,1) has standard deviation
	// 1/sqrt(12·l) ≈ 0.0016; allow 5 of them.
	if math.Abs(mean-0.5) > 0.008 {
		t.Errorf("mean of masked values %v, want about 0.5", mean)
	}
	// Low bits too: parity should be balanced.
	var odd int
	for _, v := range view {
		odd += int(v & 1)
	}
	if math.Abs(float64(odd)-l/2) > 5*math.Sqrt(l/4.0) {
		t.Errorf("%d odd values of %d", odd, l)
	}
}

func TestTamperedCiphertextRejected(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(c *Ciphertexts)
		want   error
	}{
		{"flipped nonce bit", func(c *Ciphertexts) { c.Shares[0].Ciphertext[0] ^= 1 }, ErrDecrypt},
		{"flipped body bit", func(c *Ciphertexts) { c.Shares[1].Ciphertext[nonceSize+5] ^= 0x80 }, ErrDecrypt},
		{"flipped tag bit", func(c *Ciphertexts) { c.Shares[2].Ciphertext[CiphertextSize-1] ^= 2 }, ErrDecrypt},
		{"swapped senders", func(c *Ciphertexts) {
			c.Shares[0].Ciphertext, c.Shares[1].Ciphertext = c.Shares[1].Ciphertext, c.Shares[0].Ciphertext
		}, ErrDecrypt},
		{"share from unknown client", func(c *Ciphertexts) { c.Shares[len(c.Shares)-1].Peer = 11 }, ErrUnknownClient},
		{"addressed to another client", func(c *Ciphertexts) { c.To = 11 }, ErrUnknownClient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig(10, 6, 8), 6, nil)
			if err := h.advertise(); err != nil {
				t.Fatal(err)
			}
			if err := h.share(); err != nil {
				t.Fatal(err)
			}
			cts := h.cts[1]
			cts.Shares = slices.Clone(cts.Shares)
			tc.tamper(cts)
			c := h.clients[0]
			m, err := c.MaskedInput(cts, h.inputs[0])
			if !errors.Is(err, tc.want) || m != nil {
				t.Fatalf("MaskedInput: %v; want %v and no masked input", err, tc.want)
			}
			if c.Round() != RoundAborted {
				t.Fatalf("client round %v, want Aborted", c.Round())
			}
		})
	}
}

func TestSessionBinding(t *testing.T) {
	// A client configured for another session cannot read the shares of
	// this one.
	cfg := testConfig(3, 2, 4)
	h := newHarness(t, cfg, 7, nil)
	other := cfg
	other.Session = []byte("round-43")
	c, err := NewClient(1, other, testRNG(7, 1))
	if err != nil {
		t.Fatal(err)
	}
	h.clients[0] = c
	if err := h.advertise(); err != nil {
		t.Fatal(err)
	}
	if err := h.share(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MaskedInput(h.cts[1], h.inputs[0]); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("MaskedInput across sessions: %v, want ErrDecrypt", err)
	}
}

func TestCorruptedShareDetected(t *testing.T) {
	// Byte 31 is the least significant: for a key share, a change there
	// moves the rebuilt scalar by a small multiple, which X25519 clamping
	// alone would hide; keys are generated clamped so it is caught too.
	for _, kind := range []string{"seed", "key"} {
		for _, pos := range []int{0, 15, 31} {
			t.Run(fmt.Sprintf("%s/byte %d", kind, pos), func(t *testing.T) {
				h := newHarness(t, testConfig(10, 6, 8), 8, map[uint32]Round{10: RoundMaskedInputCollection})
				for _, step := range []func() error{h.advertise, h.share, h.mask} {
					if err := step(); err != nil {
						t.Fatal(err)
					}
				}
				for _, c := range h.clients[:9] {
					m, err := c.Unmask(h.reqs[c.ID()])
					if err != nil {
						t.Fatal(err)
					}
					if c.ID() == 1 { // the lowest id is always among the shares used
						shares := m.SeedShares
						if kind == "key" {
							shares = m.KeyShares
						}
						shares[0].Value[pos] ^= 1
					}
					if err := h.srv.HandleUnmask(m); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := h.srv.Finish(); !errors.Is(err, ErrReconstruct) {
					t.Fatalf("Finish with a corrupted share: %v, want ErrReconstruct", err)
				}
				if h.srv.Round() != RoundAborted {
					t.Fatalf("server round %v, want Aborted", h.srv.Round())
				}
			})
		}
	}
}

func TestSparseAbortsOnThinNeighbourhood(t *testing.T) {
	// Globally 7 of 10 clients survive (threshold 3), but client 1 keeps
	// only one of its 4 neighbours: its seed cannot be rebuilt safely.
	cfg := testConfig(10, 3, 4)
	cfg.Neighbours = 4
	cfg.GraphSeed = [32]byte{9}
	g, err := newGraph(cfg)
	if err != nil {
		t.Fatal(err)
	}
	drop := map[uint32]Round{}
	for _, j := range g.adj[1][:3] {
		drop[j] = RoundMaskedInputCollection
	}
	h := newHarness(t, cfg, 12, drop)
	if err := h.advertise(); err != nil {
		t.Fatal(err)
	}
	if err := h.share(); err != nil {
		t.Fatal(err)
	}
	if err := h.mask(); !errors.Is(err, ErrTooFewClients) {
		t.Fatalf("EndMaskedInput: %v, want ErrTooFewClients", err)
	}
	if h.srv.Round() != RoundAborted {
		t.Fatalf("server round %v, want Aborted", h.srv.Round())
	}
}
