package secagg

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
)

// Round is a protocol round, or the end state of a party.
type Round int

// The rounds, in order, and the two end states.
const (
	RoundAdvertiseKeys         Round = 0
	RoundShareKeys             Round = 1
	RoundMaskedInputCollection Round = 2
	RoundUnmasking             Round = 3
	// RoundDone: the client has answered the unmasking request, or the
	// server has produced the result.
	RoundDone Round = 4
	// RoundAborted: the party stopped; every further call fails with
	// ErrAborted.
	RoundAborted Round = -1
)

// String names the round.
func (r Round) String() string {
	switch r {
	case RoundAdvertiseKeys:
		return "AdvertiseKeys"
	case RoundShareKeys:
		return "ShareKeys"
	case RoundMaskedInputCollection:
		return "MaskedInputCollection"
	case RoundUnmasking:
		return "Unmasking"
	case RoundDone:
		return "Done"
	case RoundAborted:
		return "Aborted"
	}
	return fmt.Sprintf("Round(%d)", int(r))
}

// Client is one participant's side of an aggregation. Call its methods in
// round order, once each: AdvertiseKeys, ShareKeys, MaskedInput, Unmask.
// A method given a message from the server that is malformed, addressed to
// someone else, or unsafe to answer (too few clients left) returns an
// error and aborts the client; an error about the caller's own input
// vector does not. A Client is not safe for concurrent use.
type Client struct {
	id    uint32
	cfg   Config
	g     *graph
	q     quantizer
	rng   io.Reader
	round Round

	encKey, maskKey *ecdh.PrivateKey
	maskSecret      *big.Int // maskKey's scalar as a field element
	seed            *big.Int // self-mask seed b_i
	adv             AdvertiseKeys

	peers map[uint32]*clientPeer // neighbours that advertised keys
	// ownSeedShare is this client's share of its own seed.
	ownSeedShare [fieldBytes]byte
	// held are the shares received from neighbours in round 2, by owner.
	held map[uint32]heldShares
}

type clientPeer struct {
	maskKey   *ecdh.PublicKey
	encShared []byte // X25519 secret agreed with the peer's EncKey
}

type heldShares struct {
	key, seed [fieldBytes]byte
}

// NewClient returns the client with the given id (1..cfg.N) for an
// aggregation described by cfg. rng supplies all its randomness (keys,
// seeds, Shamir coefficients, nonces); nil means crypto/rand. Pass a
// deterministic source only in tests.
func NewClient(id uint32, cfg Config, rng io.Reader) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if id < 1 || int(id) > cfg.N {
		return nil, fmt.Errorf("%w: client id %d outside 1..%d", ErrUnknownClient, id, cfg.N)
	}
	g, err := newGraph(cfg)
	if err != nil {
		return nil, err
	}
	if rng == nil {
		rng = rand.Reader
	}
	cfg.Session = append([]byte(nil), cfg.Session...)
	return &Client{id: id, cfg: cfg, g: g, q: newQuantizer(cfg), rng: rng}, nil
}

// ID is the client's id.
func (c *Client) ID() uint32 { return c.id }

// Round is the round whose message the client produces next, RoundDone
// after Unmask, or RoundAborted.
func (c *Client) Round() Round { return c.round }

// enter checks that the client is in round r.
func (c *Client) enter(r Round) error {
	switch {
	case c.round == RoundAborted:
		return fmt.Errorf("client %d: %w", c.id, ErrAborted)
	case c.round != r:
		return fmt.Errorf("%w: client %d is in round %v, not %v", ErrWrongRound, c.id, c.round, r)
	}
	return nil
}

// abort stops the client, drops its secrets and returns err with context.
func (c *Client) abort(err error) error {
	c.round = RoundAborted
	c.encKey, c.maskKey, c.maskSecret, c.seed = nil, nil, nil, nil
	c.peers, c.held = nil, nil
	return fmt.Errorf("client %d: %w", c.id, err)
}

// AdvertiseKeys is round 0: it generates the client's key pairs and
// self-mask seed and returns its public keys for the server.
func (c *Client) AdvertiseKeys() (*AdvertiseKeys, error) {
	if err := c.enter(RoundAdvertiseKeys); err != nil {
		return nil, err
	}
	encKey, _, err := newX25519Key(c.rng)
	if err != nil {
		return nil, c.abort(err)
	}
	maskKey, maskSecret, err := newX25519Key(c.rng)
	if err != nil {
		return nil, c.abort(err)
	}
	seed, err := randFieldElement(c.rng)
	if err != nil {
		return nil, c.abort(err)
	}
	c.encKey, c.maskKey, c.maskSecret, c.seed = encKey, maskKey, maskSecret, seed
	c.adv = AdvertiseKeys{From: c.id, SeedCommit: seedCommitment(seed, c.cfg.Session, c.id)}
	copy(c.adv.EncKey[:], encKey.PublicKey().Bytes())
	copy(c.adv.MaskKey[:], maskKey.PublicKey().Bytes())
	c.round = RoundShareKeys
	adv := c.adv
	return &adv, nil
}

// ShareKeys is round 1: given the public keys of its neighbours that
// advertised, the client Shamir-shares its mask secret key and its
// self-mask seed among them and itself (threshold t) and returns the
// shares encrypted for each neighbour.
func (c *Client) ShareKeys(keys *PublicKeys) (*ShareKeys, error) {
	if err := c.enter(RoundShareKeys); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, c.abort(fmt.Errorf("%w: nil PublicKeys", ErrMalformed))
	}
	if err := keys.check(); err != nil {
		return nil, c.abort(err)
	}
	if keys.To != c.id {
		return nil, c.abort(fmt.Errorf("%w: PublicKeys addressed to client %d", ErrUnknownClient, keys.To))
	}
	peers := make(map[uint32]*clientPeer, len(keys.Keys))
	holders := make([]uint32, 0, len(keys.Keys))
	self := false
	for _, k := range keys.Keys {
		if k.From == c.id {
			if k != c.adv {
				return nil, c.abort(fmt.Errorf("%w: PublicKeys carries other keys for this client", ErrMalformed))
			}
			self = true
			holders = append(holders, k.From)
			continue
		}
		if !c.g.adjacent(c.id, k.From) {
			return nil, c.abort(fmt.Errorf("%w: PublicKeys has keys of client %d, not a neighbour", ErrUnknownClient, k.From))
		}
		// Low-order keys surface as errors from ECDH: from this one for the
		// encryption key, from the one in MaskedInput for the mask key.
		encPK, err := ecdh.X25519().NewPublicKey(k.EncKey[:])
		if err != nil {
			return nil, c.abort(fmt.Errorf("%w: encryption key of client %d: %v", ErrMalformed, k.From, err))
		}
		maskPK, err := ecdh.X25519().NewPublicKey(k.MaskKey[:])
		if err != nil {
			return nil, c.abort(fmt.Errorf("%w: mask key of client %d: %v", ErrMalformed, k.From, err))
		}
		shared, err := c.encKey.ECDH(encPK)
		if err != nil {
			return nil, c.abort(fmt.Errorf("%w: key agreement with client %d: %v", ErrMalformed, k.From, err))
		}
		peers[k.From] = &clientPeer{maskKey: maskPK, encShared: shared}
		holders = append(holders, k.From)
	}
	if !self {
		return nil, c.abort(fmt.Errorf("%w: PublicKeys lacks this client's own keys", ErrMalformed))
	}
	if len(holders) < c.cfg.Threshold {
		return nil, c.abort(fmt.Errorf("%w: %d clients to share with (this one included), threshold %d", ErrTooFewClients, len(holders), c.cfg.Threshold))
	}
	keyShares, err := shamirSplit(c.maskSecret, c.cfg.Threshold, holders, c.rng)
	if err != nil {
		return nil, c.abort(err)
	}
	seedShares, err := shamirSplit(c.seed, c.cfg.Threshold, holders, c.rng)
	if err != nil {
		return nil, c.abort(err)
	}
	out := &ShareKeys{From: c.id, Shares: make([]EncryptedShare, 0, len(peers))}
	var plain [sharePlainSize]byte
	for i, h := range holders {
		if h == c.id {
			c.ownSeedShare = seedShares[i]
			continue
		}
		copy(plain[:fieldBytes], keyShares[i][:])
		copy(plain[fieldBytes:], seedShares[i][:])
		ct, err := sealShares(peers[h].encShared, c.cfg.Session, c.id, h, plain[:], c.rng)
		if err != nil {
			return nil, c.abort(err)
		}
		out.Shares = append(out.Shares, EncryptedShare{Peer: h, Ciphertext: ct})
	}
	clear(plain[:])
	c.peers = peers
	c.maskSecret = nil
	c.round = RoundMaskedInputCollection
	return out, nil
}

// MaskedInput is round 2: it decrypts the shares the neighbours that
// completed round 1 sent (all must authenticate), then quantises x and
// returns it masked with the self mask and the pairwise masks of those
// neighbours. An x of the wrong length or with NaN or infinite
// coordinates is refused with ErrInvalidInput and leaves the client as it
// was.
func (c *Client) MaskedInput(cts *Ciphertexts, x []float32) (*MaskedInput, error) {
	if err := c.enter(RoundMaskedInputCollection); err != nil {
		return nil, err
	}
	if len(x) != c.cfg.VectorLen {
		return nil, fmt.Errorf("client %d: %w: %d coordinates, want %d", c.id, ErrInvalidInput, len(x), c.cfg.VectorLen)
	}
	vec := make([]uint32, len(x))
	if err := c.q.quantize(vec, x); err != nil {
		return nil, fmt.Errorf("client %d: %w", c.id, err)
	}
	if cts == nil {
		return nil, c.abort(fmt.Errorf("%w: nil Ciphertexts", ErrMalformed))
	}
	if err := cts.check(); err != nil {
		return nil, c.abort(err)
	}
	if cts.To != c.id {
		return nil, c.abort(fmt.Errorf("%w: Ciphertexts addressed to client %d", ErrUnknownClient, cts.To))
	}
	held := make(map[uint32]heldShares, len(cts.Shares)+1)
	for i := range cts.Shares {
		s := &cts.Shares[i]
		p, ok := c.peers[s.Peer]
		if !ok {
			return nil, c.abort(fmt.Errorf("%w: Ciphertexts has shares from client %d, not a neighbour that advertised keys", ErrUnknownClient, s.Peer))
		}
		plain, err := openShares(p.encShared, c.cfg.Session, s.Peer, c.id, &s.Ciphertext)
		if err != nil {
			return nil, c.abort(err)
		}
		var h heldShares
		copy(h.key[:], plain[:fieldBytes])
		copy(h.seed[:], plain[fieldBytes:])
		clear(plain)
		if !fieldValid(&h.key) || !fieldValid(&h.seed) {
			return nil, c.abort(fmt.Errorf("%w: shares from client %d are not field elements", ErrMalformed, s.Peer))
		}
		held[s.Peer] = h
	}
	if len(held)+1 < c.cfg.Threshold {
		return nil, c.abort(fmt.Errorf("%w: %d neighbours completed round 1 (plus this client), threshold %d", ErrTooFewClients, len(held), c.cfg.Threshold))
	}
	var prg prg
	key, err := selfMaskKey(c.seed, c.cfg.Session, c.id)
	if err != nil {
		return nil, c.abort(err)
	}
	if err := prg.apply(vec, key, false); err != nil {
		return nil, c.abort(err)
	}
	for _, s := range cts.Shares {
		shared, err := c.maskKey.ECDH(c.peers[s.Peer].maskKey)
		if err != nil {
			return nil, c.abort(fmt.Errorf("%w: mask key agreement with client %d: %v", ErrMalformed, s.Peer, err))
		}
		seed, err := pairwiseMaskSeed(shared, c.cfg.Session, c.id, s.Peer)
		if err != nil {
			return nil, c.abort(err)
		}
		// Δ = +1 towards lower ids, −1 towards higher ones.
		if err := prg.apply(vec, seed, c.id < s.Peer); err != nil {
			return nil, c.abort(err)
		}
	}
	held[c.id] = heldShares{seed: c.ownSeedShare}
	c.held = held
	c.encKey, c.maskKey, c.seed, c.peers = nil, nil, nil, nil
	c.round = RoundUnmasking
	return &MaskedInput{From: c.id, Vector: vec}, nil
}

// Unmask is round 3: given the survivors (clients whose masked inputs the
// server holds), it returns this client's shares of the survivors'
// self-mask seeds and of the mask keys of the neighbours that completed
// round 1 but are not survivors. For each neighbour it reveals one of the
// two, never both, and it answers once. It refuses (and aborts) if fewer
// than Threshold survivors are among its neighbourhood, or if the list
// names a neighbour that never completed round 1.
func (c *Client) Unmask(req *UnmaskRequest) (*UnmaskResponse, error) {
	if err := c.enter(RoundUnmasking); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, c.abort(fmt.Errorf("%w: nil UnmaskRequest", ErrMalformed))
	}
	if err := req.check(); err != nil {
		return nil, c.abort(err)
	}
	if req.To != c.id {
		return nil, c.abort(fmt.Errorf("%w: UnmaskRequest addressed to client %d", ErrUnknownClient, req.To))
	}
	survived := make(map[uint32]bool, len(req.Survivors))
	for _, s := range req.Survivors {
		if !c.g.valid(s) {
			return nil, c.abort(fmt.Errorf("%w: UnmaskRequest lists client %d, not a participant", ErrUnknownClient, s))
		}
		if _, ok := c.held[s]; ok {
			survived[s] = true
			continue
		}
		if c.g.adjacent(c.id, s) {
			return nil, c.abort(fmt.Errorf("%w: UnmaskRequest lists client %d as a survivor, but it sent no shares", ErrMalformed, s))
		}
		// Not a neighbour: not this client's concern.
	}
	if !survived[c.id] {
		return nil, c.abort(fmt.Errorf("%w: UnmaskRequest does not list this client as a survivor", ErrMalformed))
	}
	if len(survived) < c.cfg.Threshold {
		return nil, c.abort(fmt.Errorf("%w: %d survivors in this client's neighbourhood, threshold %d", ErrTooFewClients, len(survived), c.cfg.Threshold))
	}
	out := &UnmaskResponse{From: c.id}
	for _, owner := range slices.Sorted(maps.Keys(c.held)) {
		h := c.held[owner]
		if survived[owner] {
			out.SeedShares = append(out.SeedShares, Share{Owner: owner, Value: h.seed})
		} else {
			out.KeyShares = append(out.KeyShares, Share{Owner: owner, Value: h.key})
		}
	}
	c.held = nil
	c.round = RoundDone
	return out, nil
}
