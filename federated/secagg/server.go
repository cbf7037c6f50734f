package secagg

import (
	"cmp"
	"crypto/ecdh"
	"fmt"
	"maps"
	"math/big"
	"slices"
)

// Server is the aggregator's side of one aggregation. It collects the
// messages of each round through its Handle methods and closes the round
// with the matching End method (or Finish for the last), which returns
// the messages to send next, keyed by recipient. Handle methods reject a
// bad message with an error and leave the server as it was; End methods
// abort the aggregation when fewer than Threshold clients remain. The
// messages the End methods return may share backing arrays: treat them as
// read-only. A Server is not safe for concurrent use.
type Server struct {
	cfg   Config
	g     *graph
	q     quantizer
	round Round

	// Round 0.
	adverts map[uint32]*AdvertiseKeys
	maskPKs map[uint32]*ecdh.PublicKey
	u1      *idSet
	// Round 1.
	shareMsgs map[uint32]*ShareKeys
	u2        *idSet
	// Round 2.
	acc    []uint32
	masked map[uint32]bool
	u3     *idSet
	drop   *idSet   // U2 \ U3
	needSK []uint32 // dropped clients with a survivor among their neighbours
	// Round 3.
	responded  map[uint32]bool
	seedShares map[uint32][]heldShare // by owner
	keyShares  map[uint32][]heldShare // by owner
}

// heldShare is a share of an owner's secret held by client x.
type heldShare struct {
	x uint32
	v [fieldBytes]byte
}

// Result is the outcome of an aggregation.
type Result struct {
	// Sum is Σ x_i over the included clients, each coordinate clipped and
	// quantised, decoded from fixed point.
	Sum []float64
	// Count is the number of included clients.
	Count int
	// Included are the ids of the clients whose inputs are in Sum (U3),
	// sorted.
	Included []uint32
	// Dropped are the ids of the clients that completed round 1 but sent
	// no masked input; their pairwise masks were removed. Sorted.
	Dropped []uint32
}

// Mean returns Sum / Count.
func (r *Result) Mean() []float64 {
	out := make([]float64, len(r.Sum))
	if r.Count == 0 {
		return out
	}
	for i, v := range r.Sum {
		out[i] = v / float64(r.Count)
	}
	return out
}

// NewServer returns the server of an aggregation described by cfg, in
// round 0.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g, err := newGraph(cfg)
	if err != nil {
		return nil, err
	}
	cfg.Session = append([]byte(nil), cfg.Session...)
	return &Server{
		cfg:     cfg,
		g:       g,
		q:       newQuantizer(cfg),
		adverts: make(map[uint32]*AdvertiseKeys),
		maskPKs: make(map[uint32]*ecdh.PublicKey),
	}, nil
}

// Round is the round the server is collecting, RoundDone after Finish, or
// RoundAborted.
func (s *Server) Round() Round { return s.round }

func (s *Server) enter(r Round) error {
	switch {
	case s.round == RoundAborted:
		return fmt.Errorf("server: %w", ErrAborted)
	case s.round != r:
		return fmt.Errorf("%w: server is in round %v, not %v", ErrWrongRound, s.round, r)
	}
	return nil
}

func (s *Server) abort(err error) error {
	s.round = RoundAborted
	s.adverts, s.maskPKs, s.shareMsgs, s.acc = nil, nil, nil, nil
	s.seedShares, s.keyShares = nil, nil
	return fmt.Errorf("server: %w", err)
}

// admit runs the checks common to every client message: the round, the
// message's shape, the sender's membership and duplicates.
func (s *Server) admit(r Round, t MessageType, from uint32, members func(uint32) bool, seen func(uint32) bool, check func() error) error {
	if err := s.enter(r); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	if !members(from) {
		return fmt.Errorf("%w: %v from client %d, not a participant of round %v", ErrUnknownClient, t, from, r)
	}
	if seen(from) {
		return fmt.Errorf("%w: second %v from client %d", ErrDuplicate, t, from)
	}
	return nil
}

// HandleAdvertiseKeys takes a client's round-0 message.
func (s *Server) HandleAdvertiseKeys(m *AdvertiseKeys) error {
	if m == nil {
		return fmt.Errorf("%w: nil AdvertiseKeys", ErrMalformed)
	}
	err := s.admit(RoundAdvertiseKeys, m.Type(), m.From, s.g.valid,
		func(id uint32) bool { return s.adverts[id] != nil }, m.check)
	if err != nil {
		return err
	}
	if _, err := parsePublicKey(m.EncKey); err != nil {
		return fmt.Errorf("%w: encryption key of client %d: %v", ErrMalformed, m.From, err)
	}
	maskPK, err := parsePublicKey(m.MaskKey)
	if err != nil {
		return fmt.Errorf("%w: mask key of client %d: %v", ErrMalformed, m.From, err)
	}
	if m.EncKey == m.MaskKey {
		return fmt.Errorf("%w: client %d uses one key for encryption and masks", ErrMalformed, m.From)
	}
	adv := *m
	s.adverts[m.From] = &adv
	s.maskPKs[m.From] = maskPK
	return nil
}

// EndAdvertiseKeys closes round 0. The clients that advertised keys form
// U1; each gets the keys of its neighbours in U1 and its own. It aborts
// when |U1| < Threshold.
func (s *Server) EndAdvertiseKeys() (map[uint32]*PublicKeys, error) {
	if err := s.enter(RoundAdvertiseKeys); err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(s.adverts))
	if len(ids) < s.cfg.Threshold {
		return nil, s.abort(fmt.Errorf("%w: %d clients advertised keys, threshold %d", ErrTooFewClients, len(ids), s.cfg.Threshold))
	}
	s.u1 = newIDSet(s.cfg.N, ids)
	out := make(map[uint32]*PublicKeys, len(ids))
	var all []AdvertiseKeys
	if s.g.complete {
		all = make([]AdvertiseKeys, len(ids))
		for i, id := range ids {
			all[i] = *s.adverts[id]
		}
	}
	for _, id := range ids {
		if all != nil {
			out[id] = &PublicKeys{To: id, Keys: all}
			continue
		}
		nb := withSelf(s.g.among(id, s.u1), id)
		keys := make([]AdvertiseKeys, len(nb))
		for i, j := range nb {
			keys[i] = *s.adverts[j]
		}
		out[id] = &PublicKeys{To: id, Keys: keys}
	}
	s.shareMsgs = make(map[uint32]*ShareKeys, len(ids))
	s.round = RoundShareKeys
	return out, nil
}

// HandleShareKeys takes a client's round-1 message, which must hold
// exactly one ciphertext for each of its neighbours in U1.
func (s *Server) HandleShareKeys(m *ShareKeys) error {
	if m == nil {
		return fmt.Errorf("%w: nil ShareKeys", ErrMalformed)
	}
	err := s.admit(RoundShareKeys, m.Type(), m.From, func(id uint32) bool { return s.u1.has(id) },
		func(id uint32) bool { return s.shareMsgs[id] != nil }, m.check)
	if err != nil {
		return err
	}
	want := s.g.among(m.From, s.u1)
	if len(m.Shares) != len(want) {
		return fmt.Errorf("%w: client %d sent %d shares, want %d (one per neighbour that advertised keys)", ErrMalformed, m.From, len(m.Shares), len(want))
	}
	for i, sh := range m.Shares {
		if sh.Peer != want[i] {
			return fmt.Errorf("%w: client %d sent a share for client %d, want one for %d", ErrMalformed, m.From, sh.Peer, want[i])
		}
	}
	cp := &ShareKeys{From: m.From, Shares: slices.Clone(m.Shares)}
	s.shareMsgs[m.From] = cp
	return nil
}

// EndShareKeys closes round 1. The clients that shared keys form U2; each
// gets the ciphertexts addressed to it by the others in U2. It aborts
// when |U2| < Threshold.
func (s *Server) EndShareKeys() (map[uint32]*Ciphertexts, error) {
	if err := s.enter(RoundShareKeys); err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(s.shareMsgs))
	if len(ids) < s.cfg.Threshold {
		return nil, s.abort(fmt.Errorf("%w: %d clients shared keys, threshold %d", ErrTooFewClients, len(ids), s.cfg.Threshold))
	}
	s.u2 = newIDSet(s.cfg.N, ids)
	out := make(map[uint32]*Ciphertexts, len(ids))
	for _, id := range ids {
		out[id] = &Ciphertexts{To: id}
	}
	// Senders in increasing order keep each recipient's list sorted.
	for _, from := range ids {
		for _, sh := range s.shareMsgs[from].Shares {
			if c := out[sh.Peer]; c != nil {
				c.Shares = append(c.Shares, EncryptedShare{Peer: from, Ciphertext: sh.Ciphertext})
			}
		}
	}
	s.shareMsgs = nil
	s.acc = make([]uint32, s.cfg.VectorLen)
	s.masked = make(map[uint32]bool, len(ids))
	s.round = RoundMaskedInputCollection
	return out, nil
}

// HandleMaskedInput takes a client's round-2 message and adds its vector
// to the running sum (the server keeps no individual vector).
func (s *Server) HandleMaskedInput(m *MaskedInput) error {
	if m == nil {
		return fmt.Errorf("%w: nil MaskedInput", ErrMalformed)
	}
	err := s.admit(RoundMaskedInputCollection, m.Type(), m.From, func(id uint32) bool { return s.u2.has(id) },
		func(id uint32) bool { return s.masked[id] }, m.check)
	if err != nil {
		return err
	}
	if len(m.Vector) != s.cfg.VectorLen {
		return fmt.Errorf("%w: client %d sent %d elements, want %d", ErrMalformed, m.From, len(m.Vector), s.cfg.VectorLen)
	}
	for i, v := range m.Vector {
		s.acc[i] += v
	}
	s.masked[m.From] = true
	return nil
}

// EndMaskedInput closes round 2. The clients that sent masked inputs
// form U3, whose sum the server will learn; U2 \ U3 dropped out. Each
// client in U3 gets the survivors among its neighbourhood. It aborts
// when |U3| < Threshold, or, for the sparse graph, when a survivor or a
// dropped client has fewer than Threshold survivors to rebuild its secret
// from.
func (s *Server) EndMaskedInput() (map[uint32]*UnmaskRequest, error) {
	if err := s.enter(RoundMaskedInputCollection); err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(s.masked))
	if len(ids) < s.cfg.Threshold {
		return nil, s.abort(fmt.Errorf("%w: %d clients sent masked inputs, threshold %d", ErrTooFewClients, len(ids), s.cfg.Threshold))
	}
	s.u3 = newIDSet(s.cfg.N, ids)
	var dropped []uint32
	for _, id := range s.u2.list {
		if !s.u3.has(id) {
			dropped = append(dropped, id)
		}
	}
	s.drop = newIDSet(s.cfg.N, dropped)
	out := make(map[uint32]*UnmaskRequest, len(ids))
	for _, id := range ids {
		if s.g.complete {
			out[id] = &UnmaskRequest{To: id, Survivors: ids}
			continue
		}
		nb := withSelf(s.g.among(id, s.u3), id)
		if len(nb) < s.cfg.Threshold {
			return nil, s.abort(fmt.Errorf("%w: client %d has %d survivors in its neighbourhood, threshold %d", ErrTooFewClients, id, len(nb), s.cfg.Threshold))
		}
		out[id] = &UnmaskRequest{To: id, Survivors: nb}
	}
	s.needSK = s.needSK[:0]
	for _, j := range dropped {
		n := len(s.g.among(j, s.u3))
		if n == 0 {
			continue // no survivor carries a mask shared with j
		}
		if n < s.cfg.Threshold {
			return nil, s.abort(fmt.Errorf("%w: dropped client %d has %d surviving neighbours, threshold %d", ErrTooFewClients, j, n, s.cfg.Threshold))
		}
		s.needSK = append(s.needSK, j)
	}
	s.masked = nil
	s.responded = make(map[uint32]bool, len(ids))
	s.seedShares = make(map[uint32][]heldShare, len(ids))
	s.keyShares = make(map[uint32][]heldShare, len(s.needSK))
	s.round = RoundUnmasking
	return out, nil
}

// HandleUnmask takes a client's round-3 message, which must hold exactly
// its shares of the seeds of its surviving neighbours and itself, and of
// the mask keys of its dropped neighbours.
func (s *Server) HandleUnmask(m *UnmaskResponse) error {
	if m == nil {
		return fmt.Errorf("%w: nil UnmaskResponse", ErrMalformed)
	}
	err := s.admit(RoundUnmasking, m.Type(), m.From, func(id uint32) bool { return s.u3.has(id) },
		func(id uint32) bool { return s.responded[id] }, m.check)
	if err != nil {
		return err
	}
	wantSeed := withSelf(s.g.among(m.From, s.u3), m.From)
	wantKey := s.g.among(m.From, s.drop)
	if err := sameOwners(m.From, "seed", m.SeedShares, wantSeed); err != nil {
		return err
	}
	if err := sameOwners(m.From, "key", m.KeyShares, wantKey); err != nil {
		return err
	}
	for _, sh := range m.SeedShares {
		s.seedShares[sh.Owner] = append(s.seedShares[sh.Owner], heldShare{x: m.From, v: sh.Value})
	}
	for _, sh := range m.KeyShares {
		s.keyShares[sh.Owner] = append(s.keyShares[sh.Owner], heldShare{x: m.From, v: sh.Value})
	}
	s.responded[m.From] = true
	return nil
}

func sameOwners(from uint32, what string, got []Share, want []uint32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: client %d sent %d %s shares, want %d", ErrMalformed, from, len(got), what, len(want))
	}
	for i, sh := range got {
		if sh.Owner != want[i] {
			return fmt.Errorf("%w: client %d sent a %s share of client %d, want one of %d", ErrMalformed, from, what, sh.Owner, want[i])
		}
	}
	return nil
}

// Ready reports whether Finish has enough shares to succeed.
func (s *Server) Ready() bool {
	return s.round == RoundUnmasking && s.missing() == nil
}

// missing says which secret cannot be rebuilt yet, or nil.
func (s *Server) missing() error {
	t := s.cfg.Threshold
	for _, id := range s.u3.list {
		if n := len(s.seedShares[id]); n < t {
			return fmt.Errorf("%w: %d shares of the seed of client %d, threshold %d", ErrTooFewClients, n, id, t)
		}
	}
	for _, id := range s.needSK {
		if n := len(s.keyShares[id]); n < t {
			return fmt.Errorf("%w: %d shares of the mask key of dropped client %d, threshold %d", ErrTooFewClients, n, id, t)
		}
	}
	return nil
}

// Finish ends round 3: it rebuilds the self-mask seeds of U3 and the
// mask keys of the dropped clients, removes their masks from the sum and
// returns the result. While some secret has fewer than Threshold shares
// it returns an error wrapping ErrTooFewClients and stays in round 3, so
// the caller may wait for more responses (or give up). A rebuilt secret
// that does not match its owner's commitment or public key aborts with
// ErrReconstruct.
func (s *Server) Finish() (*Result, error) {
	if err := s.enter(RoundUnmasking); err != nil {
		return nil, err
	}
	if err := s.missing(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	lag := lagrangeCache{}
	var p prg
	for _, id := range s.u3.list {
		seed, err := lag.combine(s.seedShares[id], s.cfg.Threshold)
		if err != nil {
			return nil, s.abort(err)
		}
		if seedCommitment(seed, s.cfg.Session, id) != s.adverts[id].SeedCommit {
			return nil, s.abort(fmt.Errorf("%w: self-mask seed of client %d", ErrReconstruct, id))
		}
		key, err := selfMaskKey(seed, s.cfg.Session, id)
		if err != nil {
			return nil, s.abort(err)
		}
		if err := p.apply(s.acc, key, true); err != nil {
			return nil, s.abort(err)
		}
	}
	for _, j := range s.needSK {
		v, err := lag.combine(s.keyShares[j], s.cfg.Threshold)
		if err != nil {
			return nil, s.abort(err)
		}
		sk, err := x25519FromField(v)
		if err != nil {
			return nil, s.abort(fmt.Errorf("%w: mask key of client %d: %v", ErrReconstruct, j, err))
		}
		if [KeySize]byte(sk.PublicKey().Bytes()) != s.adverts[j].MaskKey {
			return nil, s.abort(fmt.Errorf("%w: mask key of client %d", ErrReconstruct, j))
		}
		for _, i := range s.g.among(j, s.u3) {
			shared, err := sk.ECDH(s.maskPKs[i])
			if err != nil {
				return nil, s.abort(fmt.Errorf("%w: mask key agreement of clients %d and %d: %v", ErrReconstruct, j, i, err))
			}
			seed, err := pairwiseMaskSeed(shared, s.cfg.Session, i, j)
			if err != nil {
				return nil, s.abort(err)
			}
			// Client i added Δ_ij·PRG with Δ_ij = +1 when i > j: take it off.
			if err := p.apply(s.acc, seed, i > j); err != nil {
				return nil, s.abort(err)
			}
		}
	}
	res := &Result{
		Sum:      s.q.dequantize(s.acc),
		Count:    len(s.u3.list),
		Included: slices.Clone(s.u3.list),
		Dropped:  slices.Clone(s.drop.list),
	}
	s.acc, s.seedShares, s.keyShares = nil, nil, nil
	s.round = RoundDone
	return res, nil
}

// lagrangeCache reuses Lagrange coefficients across secrets rebuilt from
// the same holders (with the complete graph, every secret uses the same
// first t respondents).
type lagrangeCache map[string][]*big.Int

// combine rebuilds a secret from the t shares with the lowest holder ids.
func (c lagrangeCache) combine(shares []heldShare, t int) (*big.Int, error) {
	slices.SortFunc(shares, func(a, b heldShare) int { return cmp.Compare(a.x, b.x) })
	shares = shares[:t]
	key := make([]byte, 0, 4*t)
	xs := make([]uint32, t)
	ys := make([][fieldBytes]byte, t)
	for i, sh := range shares {
		xs[i], ys[i] = sh.x, sh.v
		key = le.AppendUint32(key, sh.x)
	}
	lambda, ok := c[string(key)]
	if !ok {
		var err error
		if lambda, err = lagrangeAtZero(xs); err != nil {
			return nil, err
		}
		c[string(key)] = lambda
	}
	return shamirCombine(lambda, ys), nil
}
