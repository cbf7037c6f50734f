package secagg

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

// testRNG is a deterministic random source for client id under seed.
func testRNG(seed uint64, id uint32) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	binary.LittleEndian.PutUint32(s[8:], id)
	return rand.NewChaCha8(s)
}

// testInputs returns n deterministic vectors of length l in [-1.25, 1.25]
// (so some coordinates get clipped when Clip is 1).
func testInputs(seed uint64, n, l int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, l)
		for j := range out[i] {
			out[i][j] = float32(2.5*r.Float64() - 1.25)
		}
	}
	return out
}

// harness runs one aggregation in memory, sending every message through
// its binary encoding, one round per step so tests can interfere between
// steps. A client listed in drop for round r sends nothing from round r
// on.
type harness struct {
	tb      testing.TB
	cfg     Config
	srv     *Server
	clients []*Client // index id-1
	inputs  [][]float32
	drop    map[uint32]Round

	keys  map[uint32]*PublicKeys
	cts   map[uint32]*Ciphertexts
	reqs  map[uint32]*UnmaskRequest
	sent  map[uint32]int // bytes each client sent
	views map[uint32][]uint32
	// msgs are the messages clients sent, by round and sender.
	msgs map[Round]map[uint32]Message
	// hooks run after a round's messages are handled, before the round
	// is closed.
	hooks map[Round]func()
}

func newHarness(tb testing.TB, cfg Config, seed uint64, drop map[uint32]Round) *harness {
	tb.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	h := &harness{tb: tb, cfg: cfg, srv: srv, drop: drop, sent: map[uint32]int{}, views: map[uint32][]uint32{},
		msgs: map[Round]map[uint32]Message{}, hooks: map[Round]func(){}}
	for id := uint32(1); int(id) <= cfg.N; id++ {
		c, err := NewClient(id, cfg, testRNG(seed, id))
		if err != nil {
			tb.Fatalf("NewClient(%d): %v", id, err)
		}
		h.clients = append(h.clients, c)
	}
	h.inputs = testInputs(seed, cfg.N, cfg.VectorLen)
	return h
}

// active reports whether client id still takes part in round r.
func (h *harness) active(id uint32, r Round) bool {
	d, ok := h.drop[id]
	return !ok || r < d
}

// wire encodes m and decodes it back, counting the bytes against from.
func wire[T Message](h *harness, from uint32, m T, dec func([]byte) (T, error)) T {
	h.tb.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		h.tb.Fatalf("marshal %v: %v", m.Type(), err)
	}
	out, err := dec(b)
	if err != nil {
		h.tb.Fatalf("decode %v: %v", m.Type(), err)
	}
	if from != 0 {
		h.sent[from] += len(b)
		r := map[MessageType]Round{TypeAdvertiseKeys: RoundAdvertiseKeys, TypeShareKeys: RoundShareKeys,
			TypeMaskedInput: RoundMaskedInputCollection, TypeUnmaskResponse: RoundUnmasking}[m.Type()]
		if h.msgs[r] == nil {
			h.msgs[r] = map[uint32]Message{}
		}
		h.msgs[r][from] = out
	}
	return out
}

func (h *harness) advertise() error {
	h.tb.Helper()
	for _, c := range h.clients {
		if !h.active(c.ID(), RoundAdvertiseKeys) {
			continue
		}
		m, err := c.AdvertiseKeys()
		if err != nil {
			h.tb.Fatalf("AdvertiseKeys: %v", err)
		}
		if err := h.srv.HandleAdvertiseKeys(wire(h, c.ID(), m, DecodeAdvertiseKeys)); err != nil {
			h.tb.Fatalf("HandleAdvertiseKeys(%d): %v", c.ID(), err)
		}
	}
	h.hook(RoundAdvertiseKeys)
	keys, err := h.srv.EndAdvertiseKeys()
	h.keys = keys
	return err
}

func (h *harness) share() error {
	h.tb.Helper()
	for _, c := range h.clients {
		if !h.active(c.ID(), RoundShareKeys) || h.keys[c.ID()] == nil {
			continue
		}
		m, err := c.ShareKeys(wire(h, 0, h.keys[c.ID()], DecodePublicKeys))
		if err != nil {
			h.tb.Fatalf("ShareKeys(%d): %v", c.ID(), err)
		}
		if err := h.srv.HandleShareKeys(wire(h, c.ID(), m, DecodeShareKeys)); err != nil {
			h.tb.Fatalf("HandleShareKeys(%d): %v", c.ID(), err)
		}
	}
	h.hook(RoundShareKeys)
	cts, err := h.srv.EndShareKeys()
	h.cts = cts
	return err
}

func (h *harness) mask() error {
	h.tb.Helper()
	for _, c := range h.clients {
		if !h.active(c.ID(), RoundMaskedInputCollection) || h.cts[c.ID()] == nil {
			continue
		}
		m, err := c.MaskedInput(wire(h, 0, h.cts[c.ID()], DecodeCiphertexts), h.inputs[c.ID()-1])
		if err != nil {
			h.tb.Fatalf("MaskedInput(%d): %v", c.ID(), err)
		}
		m = wire(h, c.ID(), m, DecodeMaskedInput)
		h.views[c.ID()] = m.Vector
		if err := h.srv.HandleMaskedInput(m); err != nil {
			h.tb.Fatalf("HandleMaskedInput(%d): %v", c.ID(), err)
		}
	}
	h.hook(RoundMaskedInputCollection)
	reqs, err := h.srv.EndMaskedInput()
	h.reqs = reqs
	return err
}

func (h *harness) unmask() {
	h.tb.Helper()
	for _, c := range h.clients {
		if !h.active(c.ID(), RoundUnmasking) || h.reqs[c.ID()] == nil {
			continue
		}
		m, err := c.Unmask(wire(h, 0, h.reqs[c.ID()], DecodeUnmaskRequest))
		if err != nil {
			h.tb.Fatalf("Unmask(%d): %v", c.ID(), err)
		}
		if err := h.srv.HandleUnmask(wire(h, c.ID(), m, DecodeUnmaskResponse)); err != nil {
			h.tb.Fatalf("HandleUnmask(%d): %v", c.ID(), err)
		}
	}
}

// run drives all four rounds and returns Finish's result.
func (h *harness) run() (*Result, error) {
	h.tb.Helper()
	if err := h.advertise(); err != nil {
		return nil, err
	}
	if err := h.share(); err != nil {
		return nil, err
	}
	if err := h.mask(); err != nil {
		return nil, err
	}
	h.unmask()
	h.hook(RoundUnmasking)
	return h.srv.Finish()
}

// expected returns the exact fixed-point sum of the included clients'
// inputs, decoded, and the plain float64 sum of their clipped inputs.
func (h *harness) expected(included []uint32) (exact, plain []float64) {
	q := newQuantizer(h.cfg)
	acc := make([]uint32, h.cfg.VectorLen)
	plain = make([]float64, h.cfg.VectorLen)
	v := make([]uint32, h.cfg.VectorLen)
	for _, id := range included {
		if err := q.quantize(v, h.inputs[id-1]); err != nil {
			h.tb.Fatal(err)
		}
		for i := range acc {
			acc[i] += v[i]
			plain[i] += math.Max(-h.cfg.Clip, math.Min(h.cfg.Clip, float64(h.inputs[id-1][i])))
		}
	}
	return q.dequantize(acc), plain
}

func (h *harness) hook(r Round) {
	if f := h.hooks[r]; f != nil {
		f()
	}
}
