package secagg

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
)

// TestServerRejects feeds the server one bad message in the middle of an
// otherwise normal aggregation, checks the error, and checks that the
// aggregation still completes with the right sum (a rejected message
// leaves the server unchanged).
func TestServerRejects(t *testing.T) {
	// Client 10 never advertises; client 9 drops after round 1 (so it is
	// in U2 but not U3).
	drop := map[uint32]Round{10: RoundAdvertiseKeys, 9: RoundMaskedInputCollection}
	tests := []struct {
		name  string
		round Round
		msg   func(h *harness) any
		want  error
	}{
		// Round 0.
		{"nil advert", RoundAdvertiseKeys, func(h *harness) any { return (*AdvertiseKeys)(nil) }, ErrMalformed},
		{"advert from id 0", RoundAdvertiseKeys, func(h *harness) any { return &AdvertiseKeys{} }, ErrMalformed},
		{"advert from id beyond N", RoundAdvertiseKeys, func(h *harness) any {
			m := *h.msgs[RoundAdvertiseKeys][1].(*AdvertiseKeys)
			m.From = 11
			return &m
		}, ErrUnknownClient},
		{"duplicate advert", RoundAdvertiseKeys, func(h *harness) any { return h.msgs[RoundAdvertiseKeys][3] }, ErrDuplicate},
		{"low-order encryption key", RoundAdvertiseKeys, func(h *harness) any {
			m := *h.msgs[RoundAdvertiseKeys][1].(*AdvertiseKeys)
			m.From, m.EncKey = 10, [KeySize]byte{}
			return &m
		}, ErrMalformed},
		{"low-order mask key", RoundAdvertiseKeys, func(h *harness) any {
			m := *h.msgs[RoundAdvertiseKeys][1].(*AdvertiseKeys)
			m.From, m.MaskKey = 10, [KeySize]byte{1}
			return &m
		}, ErrMalformed},
		{"one key for both uses", RoundAdvertiseKeys, func(h *harness) any {
			m := *h.msgs[RoundAdvertiseKeys][1].(*AdvertiseKeys)
			m.From, m.MaskKey = 10, m.EncKey
			return &m
		}, ErrMalformed},
		{"share keys in round 0", RoundAdvertiseKeys, func(h *harness) any { return &ShareKeys{From: 1} }, ErrWrongRound},
		// Round 1.
		{"shares from a client that did not advertise", RoundShareKeys, func(h *harness) any {
			m := cloneShareKeys(h.msgs[RoundShareKeys][1].(*ShareKeys))
			m.From, m.Shares[0].Peer = 10, 1
			return m
		}, ErrUnknownClient},
		{"duplicate shares", RoundShareKeys, func(h *harness) any { return h.msgs[RoundShareKeys][2] }, ErrDuplicate},
		{"missing share", RoundShareKeys, func(h *harness) any {
			m := cloneShareKeys(h.msgs[RoundShareKeys][9].(*ShareKeys))
			m.Shares = m.Shares[1:]
			delete(h.srv.shareMsgs, 9) // pretend 9 has not sent yet
			return m
		}, ErrMalformed},
		{"share for a client that did not advertise", RoundShareKeys, func(h *harness) any {
			m := cloneShareKeys(h.msgs[RoundShareKeys][9].(*ShareKeys))
			m.Shares[len(m.Shares)-1].Peer = 10
			delete(h.srv.shareMsgs, 9)
			return m
		}, ErrMalformed},
		{"advert in round 1", RoundShareKeys, func(h *harness) any { return h.msgs[RoundAdvertiseKeys][1] }, ErrWrongRound},
		// Round 2.
		{"masked input from a client that did not share", RoundMaskedInputCollection, func(h *harness) any {
			return &MaskedInput{From: 10, Vector: make([]uint32, h.cfg.VectorLen)}
		}, ErrUnknownClient},
		{"short vector", RoundMaskedInputCollection, func(h *harness) any {
			return &MaskedInput{From: 9, Vector: make([]uint32, h.cfg.VectorLen-1)}
		}, ErrMalformed},
		{"long vector", RoundMaskedInputCollection, func(h *harness) any {
			return &MaskedInput{From: 9, Vector: make([]uint32, h.cfg.VectorLen+1)}
		}, ErrMalformed},
		{"empty vector", RoundMaskedInputCollection, func(h *harness) any { return &MaskedInput{From: 9} }, ErrMalformed},
		{"duplicate masked input", RoundMaskedInputCollection, func(h *harness) any { return h.msgs[RoundMaskedInputCollection][4] }, ErrDuplicate},
		{"unmask response in round 2", RoundMaskedInputCollection, func(h *harness) any { return &UnmaskResponse{From: 1} }, ErrWrongRound},
		// Round 3.
		{"response from a dropped client", RoundUnmasking, func(h *harness) any {
			m := cloneResponse(h.msgs[RoundUnmasking][1].(*UnmaskResponse))
			m.From, m.KeyShares = 9, nil
			return m
		}, ErrUnknownClient},
		{"duplicate response", RoundUnmasking, func(h *harness) any { return h.msgs[RoundUnmasking][5] }, ErrDuplicate},
		{"response missing a seed share", RoundUnmasking, func(h *harness) any {
			m := cloneResponse(h.msgs[RoundUnmasking][1].(*UnmaskResponse))
			m.SeedShares = m.SeedShares[1:]
			delete(h.srv.responded, 1)
			return m
		}, ErrMalformed},
		{"response missing the key share", RoundUnmasking, func(h *harness) any {
			m := cloneResponse(h.msgs[RoundUnmasking][1].(*UnmaskResponse))
			m.KeyShares = nil
			delete(h.srv.responded, 1)
			return m
		}, ErrMalformed},
		{"response with both shares of a client", RoundUnmasking, func(h *harness) any {
			m := cloneResponse(h.msgs[RoundUnmasking][1].(*UnmaskResponse))
			m.SeedShares = append(m.SeedShares, Share{Owner: 9})
			delete(h.srv.responded, 1)
			return m
		}, ErrMalformed},
		{"response with a share value outside the field", RoundUnmasking, func(h *harness) any {
			m := cloneResponse(h.msgs[RoundUnmasking][1].(*UnmaskResponse))
			m.SeedShares[0].Value = [32]byte{0xff}
			delete(h.srv.responded, 1)
			return m
		}, ErrMalformed},
		{"masked input in round 3", RoundUnmasking, func(h *harness) any { return h.msgs[RoundMaskedInputCollection][1] }, ErrWrongRound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig(10, 6, 16), 9, drop)
			h.hooks[tc.round] = func() {
				// Some cases make the server forget a sender so that the
				// message is checked past the duplicate test; restore.
				shareMsgs := maps.Clone(h.srv.shareMsgs)
				responded := maps.Clone(h.srv.responded)
				err := handle(h.srv, tc.msg(h))
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if shareMsgs != nil {
					h.srv.shareMsgs = shareMsgs
				}
				if responded != nil {
					h.srv.responded = responded
				}
			}
			res, err := h.run()
			if err != nil {
				t.Fatalf("aggregation after a rejected message: %v", err)
			}
			exact, _ := h.expected(res.Included)
			if !slices.Equal(res.Sum, exact) || res.Count != 8 {
				t.Fatalf("count %d (want 8) or sum wrong after a rejected message", res.Count)
			}
		})
	}
}

func handle(s *Server, m any) error {
	switch m := m.(type) {
	case *AdvertiseKeys:
		return s.HandleAdvertiseKeys(m)
	case *ShareKeys:
		return s.HandleShareKeys(m)
	case *MaskedInput:
		return s.HandleMaskedInput(m)
	case *UnmaskResponse:
		return s.HandleUnmask(m)
	}
	panic("not a client message")
}

func cloneShareKeys(m *ShareKeys) *ShareKeys {
	return &ShareKeys{From: m.From, Shares: slices.Clone(m.Shares)}
}

func cloneResponse(m *UnmaskResponse) *UnmaskResponse {
	return &UnmaskResponse{From: m.From, SeedShares: slices.Clone(m.SeedShares), KeyShares: slices.Clone(m.KeyShares)}
}

func TestServerWrongRoundCalls(t *testing.T) {
	s, err := NewServer(testConfig(4, 3, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.EndShareKeys(); !errors.Is(err, ErrWrongRound) {
		t.Errorf("EndShareKeys in round 0: %v", err)
	}
	if _, err := s.EndMaskedInput(); !errors.Is(err, ErrWrongRound) {
		t.Errorf("EndMaskedInput in round 0: %v", err)
	}
	if _, err := s.Finish(); !errors.Is(err, ErrWrongRound) {
		t.Errorf("Finish in round 0: %v", err)
	}
	if s.Ready() {
		t.Error("Ready in round 0")
	}
	if s.Round() != RoundAdvertiseKeys {
		t.Errorf("round %v, want AdvertiseKeys (wrong-round calls must not change it)", s.Round())
	}
}

// TestClientRejects hands a client bad server messages and bad inputs.
func TestClientRejects(t *testing.T) {
	type step int
	const (
		atShare step = iota
		atMask
	)
	tests := []struct {
		name    string
		at      step
		mutate  func(h *harness, keys *PublicKeys, cts *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32)
		want    error
		aborted bool
	}{
		{"keys addressed to another client", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.To = 2
			return k, c, x
		}, ErrUnknownClient, true},
		{"nil keys", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			return nil, c, x
		}, ErrMalformed, true},
		{"own keys missing", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.Keys = k.Keys[1:]
			return k, c, x
		}, ErrMalformed, true},
		{"own keys replaced", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.Keys[0].MaskKey = k.Keys[1].MaskKey
			return k, c, x
		}, ErrMalformed, true},
		{"low-order peer key", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.Keys[2].EncKey = [KeySize]byte{}
			return k, c, x
		}, ErrMalformed, true},
		{"keys of a non-participant", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			extra := k.Keys[1]
			extra.From = 9
			k.Keys = append(k.Keys, extra)
			return k, c, x
		}, ErrUnknownClient, true},
		{"too few keys", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.Keys = k.Keys[:2] // itself and one peer, threshold 4
			return k, c, x
		}, ErrTooFewClients, true},
		{"unsorted keys", atShare, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			k.Keys[1], k.Keys[2] = k.Keys[2], k.Keys[1]
			return k, c, x
		}, ErrMalformed, true},
		{"too few ciphertexts", atMask, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			c.Shares = c.Shares[:2]
			return k, c, x
		}, ErrTooFewClients, true},
		{"nil ciphertexts", atMask, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			return k, nil, x
		}, ErrMalformed, true},
		{"short input", atMask, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			return k, c, x[1:]
		}, ErrInvalidInput, false},
		{"NaN input", atMask, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			x = slices.Clone(x)
			x[3] = float32(math.NaN())
			return k, c, x
		}, ErrInvalidInput, false},
		{"infinite input", atMask, func(h *harness, k *PublicKeys, c *Ciphertexts, x []float32) (*PublicKeys, *Ciphertexts, []float32) {
			x = slices.Clone(x)
			x[0] = float32(math.Inf(-1))
			return k, c, x
		}, ErrInvalidInput, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig(6, 4, 8), 10, nil)
			if err := h.advertise(); err != nil {
				t.Fatal(err)
			}
			c := h.clients[0]
			keys := &PublicKeys{To: 1, Keys: slices.Clone(h.keys[1].Keys)}
			if tc.at == atShare {
				k, _, _ := tc.mutate(h, keys, nil, nil)
				_, err := c.ShareKeys(k)
				checkClientErr(t, c, err, tc.want, tc.aborted)
				return
			}
			if err := h.share(); err != nil {
				t.Fatal(err)
			}
			cts := &Ciphertexts{To: 1, Shares: slices.Clone(h.cts[1].Shares)}
			_, cts2, x := tc.mutate(h, nil, cts, h.inputs[0])
			_, err := c.MaskedInput(cts2, x)
			checkClientErr(t, c, err, tc.want, tc.aborted)
			if !tc.aborted {
				// A refused input leaves the client ready for a good one.
				if _, err := c.MaskedInput(h.cts[1], h.inputs[0]); err != nil {
					t.Fatalf("MaskedInput after a refused input: %v", err)
				}
			}
		})
	}
}

func checkClientErr(t *testing.T, c *Client, err, want error, aborted bool) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if got := c.Round() == RoundAborted; got != aborted {
		t.Fatalf("client round %v, aborted = %v, want %v", c.Round(), got, aborted)
	}
}

func TestClientWrongRoundCalls(t *testing.T) {
	c, err := NewClient(1, testConfig(4, 3, 2), testRNG(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ShareKeys(&PublicKeys{To: 1}); !errors.Is(err, ErrWrongRound) {
		t.Errorf("ShareKeys before AdvertiseKeys: %v", err)
	}
	if _, err := c.MaskedInput(&Ciphertexts{To: 1}, []float32{0, 0}); !errors.Is(err, ErrWrongRound) {
		t.Errorf("MaskedInput before AdvertiseKeys: %v", err)
	}
	if _, err := c.Unmask(&UnmaskRequest{To: 1}); !errors.Is(err, ErrWrongRound) {
		t.Errorf("Unmask before AdvertiseKeys: %v", err)
	}
	if _, err := c.AdvertiseKeys(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdvertiseKeys(); !errors.Is(err, ErrWrongRound) {
		t.Errorf("second AdvertiseKeys: %v", err)
	}
	if c.Round() != RoundShareKeys {
		t.Errorf("round %v, want ShareKeys", c.Round())
	}
	for _, id := range []uint32{0, 5} {
		if _, err := NewClient(id, testConfig(4, 3, 2), nil); !errors.Is(err, ErrUnknownClient) {
			t.Errorf("NewClient(%d): %v, want ErrUnknownClient", id, err)
		}
	}
	if _, err := NewClient(1, Config{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewClient with zero config: %v, want ErrInvalidConfig", err)
	}
}

// TestBrokenRandomSource checks that a failing or degenerate random source
// aborts the client with an error rather than hanging or panicking.
func TestBrokenRandomSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		rng  func() []byte
	}{
		{"empty", func() []byte { return nil }},
		{"all ones", func() []byte { return bytesOf(0xff, 1<<12) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(1, testConfig(4, 3, 2), &sliceReader{b: tc.rng()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.AdvertiseKeys(); err == nil {
				t.Fatal("AdvertiseKeys with a broken random source succeeded")
			}
			if c.Round() != RoundAborted {
				t.Fatalf("round %v, want Aborted", c.Round())
			}
		})
	}
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("exhausted")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesOf(v byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = v
	}
	return b
}

func TestSparseClientRejectsNonNeighbour(t *testing.T) {
	cfg := testConfig(10, 3, 4)
	cfg.Neighbours = 4
	cfg.GraphSeed = [32]byte{7}
	h := newHarness(t, cfg, 11, nil)
	if err := h.advertise(); err != nil {
		t.Fatal(err)
	}
	keys := h.keys[1]
	if len(keys.Keys) != 5 {
		t.Fatalf("client 1 got %d keys, want itself and 4 neighbours", len(keys.Keys))
	}
	// Find a non-neighbour and slip its keys in.
	var stranger uint32
	for id := uint32(2); id <= 10; id++ {
		if !h.srv.g.adjacent(1, id) {
			stranger = id
			break
		}
	}
	adv := *h.msgs[RoundAdvertiseKeys][stranger].(*AdvertiseKeys)
	forged := &PublicKeys{To: 1, Keys: slices.Clone(keys.Keys)}
	i, _ := slices.BinarySearchFunc(forged.Keys, stranger, func(k AdvertiseKeys, id uint32) int { return int(k.From) - int(id) })
	forged.Keys = slices.Insert(forged.Keys, i, adv)
	_, err := h.clients[0].ShareKeys(forged)
	checkClientErr(t, h.clients[0], err, ErrUnknownClient, true)
}
