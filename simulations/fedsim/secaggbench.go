package fedsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/petrel-mesh/petrel/federated/secagg"
)

// SecAggConfig configures SecAggCost. Zero fields take the defaults in
// brackets.
type SecAggConfig struct {
	// Clients is the number of participants [100].
	Clients int
	// Params is the length of every client's vector [100,000].
	Params int
	// DropFraction of the clients drop out after sharing their keys and
	// before sending their masked input — the case that costs the server
	// most, since it must rebuild their mask keys and remove their
	// pairwise masks [0.1; use a negative value for none].
	DropFraction float64
	// Threshold is t [⌊2·Clients/3⌋ + 1].
	Threshold int
	// Neighbours is k of the SecAgg+ sparse graph [0: complete graph].
	Neighbours int
	// Clip bounds every coordinate [1]; the inputs are normal with
	// standard deviation Clip/100, like model deltas.
	Clip float64
	// Seed seeds the inputs, the dropouts and the clients' randomness.
	Seed uint64
}

// SecAggClientCost is one client's share of the work.
type SecAggClientCost struct {
	ID        uint32        `json:"id"`
	Dropped   bool          `json:"dropped"`    // dropped before its masked input
	Time      time.Duration `json:"time_ns"`    // compute: its four calls, encoding and decoding
	BytesUp   int           `json:"bytes_up"`   // encoded messages it sent
	BytesDown int           `json:"bytes_down"` // encoded messages it received
}

// SecAggResult is SecAggCost's report.
type SecAggResult struct {
	Clients    int `json:"clients"`
	Params     int `json:"params"`
	Threshold  int `json:"threshold"`
	Neighbours int `json:"neighbours"` // 0: complete graph
	Dropped    int `json:"dropped"`
	// PerClient is every client's cost, by id.
	PerClient []SecAggClientCost `json:"per_client"`
	// Mean and maximum over the clients that completed the protocol.
	MeanClientTime time.Duration `json:"mean_client_time_ns"`
	MaxClientTime  time.Duration `json:"max_client_time_ns"`
	MeanBytesUp    int           `json:"mean_bytes_up"`
	MeanBytesDown  int           `json:"mean_bytes_down"`
	// PlainBytes is what sending the vector unmasked as float32 costs.
	PlainBytes int `json:"plain_bytes"`
	// ServerTime is the server's compute over the four rounds (handling,
	// closing rounds, unmasking, encoding and decoding); ServerRounds
	// splits it by round.
	ServerTime   time.Duration    `json:"server_time_ns"`
	ServerRounds [4]time.Duration `json:"server_rounds_ns"`
	// ServerBytesIn and ServerBytesOut are the totals the server
	// received and sent.
	ServerBytesIn  int64 `json:"server_bytes_in"`
	ServerBytesOut int64 `json:"server_bytes_out"`
	// MaxError is the largest difference between the decoded sum and the
	// float64 sum of the survivors' inputs (quantisation error).
	MaxError float64 `json:"max_error"`
}

// SecAggCost runs one secure aggregation (federated/secagg) in memory,
// sequentially, every message going through its binary encoding, and
// measures each client's and the server's compute time and bytes. It
// checks that the result is the survivors' sum within the quantisation
// error and fails otherwise.
func SecAggCost(ctx context.Context, cfg SecAggConfig) (*SecAggResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sc := cfg.secaggConfig()
	nDrop := cfg.dropped()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eca99))
	binary.LittleEndian.PutUint64(sc.GraphSeed[:], rng.Uint64())
	dropped := make([]bool, cfg.Clients+1)
	for _, i := range rng.Perm(cfg.Clients)[:nDrop] {
		dropped[i+1] = true
	}
	inputs := make([][]float32, cfg.Clients+1)
	for id := 1; id <= cfg.Clients; id++ {
		x := make([]float32, cfg.Params)
		for i := range x {
			x[i] = float32(cfg.Clip / 100 * rng.NormFloat64())
		}
		inputs[id] = x
	}

	b := &secaggBench{clip: cfg.Clip, res: &SecAggResult{Clients: cfg.Clients, Params: cfg.Params, Threshold: cfg.Threshold,
		Neighbours: cfg.Neighbours, Dropped: nDrop, PlainBytes: 4 * cfg.Params}}
	var err error
	if b.srv, err = timed(&b.res.ServerRounds[0], func() (*secagg.Server, error) { return secagg.NewServer(sc) }); err != nil {
		return nil, fmt.Errorf("fedsim: secagg server: %w", err)
	}
	b.clients = make([]*secagg.Client, cfg.Clients+1)
	b.res.PerClient = make([]SecAggClientCost, cfg.Clients+1)
	for id := 1; id <= cfg.Clients; id++ {
		cost := &b.res.PerClient[id]
		cost.ID, cost.Dropped = uint32(id), dropped[id]
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], cfg.Seed)
		binary.LittleEndian.PutUint32(seed[8:], uint32(id))
		if b.clients[id], err = timed(&cost.Time, func() (*secagg.Client, error) {
			return secagg.NewClient(uint32(id), sc, rand.NewChaCha8(seed))
		}); err != nil {
			return nil, fmt.Errorf("fedsim: secagg client %d: %w", id, err)
		}
	}
	if err := b.run(ctx, dropped, inputs); err != nil {
		return nil, err
	}
	b.res.PerClient = b.res.PerClient[1:]
	b.summarise()
	return b.res, nil
}

// withDefaults returns c with its zero fields set to their defaults.
func (c SecAggConfig) withDefaults() SecAggConfig {
	if c.Clients == 0 {
		c.Clients = 100
	}
	if c.Params == 0 {
		c.Params = 100_000
	}
	switch {
	case c.DropFraction == 0:
		c.DropFraction = 0.1
	case c.DropFraction < 0:
		c.DropFraction = 0
	}
	if c.Threshold == 0 {
		c.Threshold = 2*c.Clients/3 + 1
	}
	if c.Clip == 0 {
		c.Clip = 1
	}
	return c
}

func (c SecAggConfig) secaggConfig() secagg.Config {
	return secagg.Config{N: c.Clients, Threshold: c.Threshold, VectorLen: c.Params, Clip: c.Clip,
		Neighbours: c.Neighbours, Session: []byte("fedsim secagg cost")}
}

// dropped is the number of clients that drop out.
func (c SecAggConfig) dropped() int { return int(math.Round(c.DropFraction * float64(c.Clients))) }

// Validate checks c after its defaults are applied: a valid secagg
// configuration, and enough survivors to reach the threshold. Errors wrap
// ErrInvalidConfig.
func (c SecAggConfig) Validate() error {
	c = c.withDefaults()
	if !(c.DropFraction < 1) {
		return invalid("secagg DropFraction is %v, want below 1", c.DropFraction)
	}
	if err := c.secaggConfig().Validate(); err != nil {
		return invalid("%v", err)
	}
	if n := c.Clients - c.dropped(); n < c.Threshold {
		return invalid("secagg: %d of %d clients survive the dropouts, below the threshold %d", n, c.Clients, c.Threshold)
	}
	return nil
}

// secaggBench drives one aggregation.
type secaggBench struct {
	srv     *secagg.Server
	clients []*secagg.Client // by id; index 0 unused
	clip    float64
	res     *SecAggResult
}

// timed runs f, adding its duration to *d.
func timed[T any](d *time.Duration, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	*d += time.Since(start)
	return v, err
}

// send encodes m on the sender's clock and decodes it on the receiver's,
// counting the bytes; from or to is nil for the server, whose time and
// bytes go to the server figures of round r.
func send[T secagg.Message](b *secaggBench, r int, from, to *SecAggClientCost, m T, decode func([]byte) (T, error)) (T, error) {
	var zero T
	clock := func(c *SecAggClientCost) *time.Duration {
		if c == nil {
			return &b.res.ServerRounds[r]
		}
		return &c.Time
	}
	enc, err := timed(clock(from), func() ([]byte, error) { return m.MarshalBinary() })
	if err != nil {
		return zero, fmt.Errorf("fedsim: secagg encode %v: %w", m.Type(), err)
	}
	if from == nil {
		b.res.ServerBytesOut += int64(len(enc))
		to.BytesDown += len(enc)
	} else {
		b.res.ServerBytesIn += int64(len(enc))
		from.BytesUp += len(enc)
	}
	out, err := timed(clock(to), func() (T, error) { return decode(enc) })
	if err != nil {
		return zero, fmt.Errorf("fedsim: secagg decode %v: %w", m.Type(), err)
	}
	return out, nil
}

// run plays the four rounds; clients marked dropped stop after round 1.
func (b *secaggBench) run(ctx context.Context, dropped []bool, inputs [][]float32) error {
	srvTime := func(r int) *time.Duration { return &b.res.ServerRounds[r] }
	// Round 0: AdvertiseKeys.
	for id := 1; id < len(b.clients); id++ {
		cost := &b.res.PerClient[id]
		m, err := timed(&cost.Time, b.clients[id].AdvertiseKeys)
		if err != nil {
			return fmt.Errorf("fedsim: secagg client %d: %w", id, err)
		}
		if m, err = send(b, 0, cost, nil, m, secagg.DecodeAdvertiseKeys); err != nil {
			return err
		}
		if _, err := timed(srvTime(0), func() (struct{}, error) { return struct{}{}, b.srv.HandleAdvertiseKeys(m) }); err != nil {
			return fmt.Errorf("fedsim: secagg server: %w", err)
		}
	}
	keys, err := timed(srvTime(0), b.srv.EndAdvertiseKeys)
	if err != nil {
		return fmt.Errorf("fedsim: secagg server: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Round 1: ShareKeys.
	for id := 1; id < len(b.clients); id++ {
		cost := &b.res.PerClient[id]
		pk, err := send(b, 0, nil, cost, keys[uint32(id)], secagg.DecodePublicKeys)
		if err != nil {
			return err
		}
		m, err := timed(&cost.Time, func() (*secagg.ShareKeys, error) { return b.clients[id].ShareKeys(pk) })
		if err != nil {
			return fmt.Errorf("fedsim: secagg client %d: %w", id, err)
		}
		if m, err = send(b, 1, cost, nil, m, secagg.DecodeShareKeys); err != nil {
			return err
		}
		if _, err := timed(srvTime(1), func() (struct{}, error) { return struct{}{}, b.srv.HandleShareKeys(m) }); err != nil {
			return fmt.Errorf("fedsim: secagg server: %w", err)
		}
	}
	cts, err := timed(srvTime(1), b.srv.EndShareKeys)
	if err != nil {
		return fmt.Errorf("fedsim: secagg server: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Round 2: MaskedInputCollection; the dropped clients vanish here.
	for id := 1; id < len(b.clients); id++ {
		if dropped[id] {
			continue
		}
		cost := &b.res.PerClient[id]
		ct, err := send(b, 1, nil, cost, cts[uint32(id)], secagg.DecodeCiphertexts)
		if err != nil {
			return err
		}
		m, err := timed(&cost.Time, func() (*secagg.MaskedInput, error) { return b.clients[id].MaskedInput(ct, inputs[id]) })
		if err != nil {
			return fmt.Errorf("fedsim: secagg client %d: %w", id, err)
		}
		if m, err = send(b, 2, cost, nil, m, secagg.DecodeMaskedInput); err != nil {
			return err
		}
		if _, err := timed(srvTime(2), func() (struct{}, error) { return struct{}{}, b.srv.HandleMaskedInput(m) }); err != nil {
			return fmt.Errorf("fedsim: secagg server: %w", err)
		}
	}
	reqs, err := timed(srvTime(2), b.srv.EndMaskedInput)
	if err != nil {
		return fmt.Errorf("fedsim: secagg server: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Round 3: Unmasking.
	for id := 1; id < len(b.clients); id++ {
		if dropped[id] {
			continue
		}
		cost := &b.res.PerClient[id]
		req, err := send(b, 2, nil, cost, reqs[uint32(id)], secagg.DecodeUnmaskRequest)
		if err != nil {
			return err
		}
		m, err := timed(&cost.Time, func() (*secagg.UnmaskResponse, error) { return b.clients[id].Unmask(req) })
		if err != nil {
			return fmt.Errorf("fedsim: secagg client %d: %w", id, err)
		}
		if m, err = send(b, 3, cost, nil, m, secagg.DecodeUnmaskResponse); err != nil {
			return err
		}
		if _, err := timed(srvTime(3), func() (struct{}, error) { return struct{}{}, b.srv.HandleUnmask(m) }); err != nil {
			return fmt.Errorf("fedsim: secagg server: %w", err)
		}
	}
	out, err := timed(srvTime(3), b.srv.Finish)
	if err != nil {
		return fmt.Errorf("fedsim: secagg server: %w", err)
	}
	return b.check(out, dropped, inputs)
}

// check compares the decoded sum with the survivors' float64 sum.
func (b *secaggBench) check(out *secagg.Result, dropped []bool, inputs [][]float32) error {
	want := make([]float64, b.res.Params)
	survivors := 0
	for id := 1; id < len(inputs); id++ {
		if dropped[id] {
			continue
		}
		survivors++
		for i, v := range inputs[id] {
			want[i] += math.Max(-b.clip, math.Min(b.clip, float64(v)))
		}
	}
	if out.Count != survivors || len(out.Sum) != len(want) {
		return fmt.Errorf("fedsim: secagg summed %d clients and %d values, want %d and %d", out.Count, len(out.Sum), survivors, len(want))
	}
	for i, w := range want {
		b.res.MaxError = max(b.res.MaxError, math.Abs(out.Sum[i]-w))
	}
	// Each client's coordinate is off by at most half a fixed-point unit.
	bound := float64(survivors)/(2*secagg.MaxScale(b.res.Clients, b.clip))*1.001 + 1e-12
	if b.res.MaxError > bound {
		return fmt.Errorf("fedsim: secagg sum is off by %g, beyond the quantisation bound %g", b.res.MaxError, bound)
	}
	return nil
}

// summarise fills the totals and the per-client means.
func (b *secaggBench) summarise() {
	r := b.res
	n := 0
	var total time.Duration
	up, down := 0, 0
	for _, c := range r.PerClient {
		if c.Dropped {
			continue
		}
		n++
		total += c.Time
		r.MaxClientTime = max(r.MaxClientTime, c.Time)
		up += c.BytesUp
		down += c.BytesDown
	}
	for _, d := range r.ServerRounds {
		r.ServerTime += d
	}
	if n > 0 {
		r.MeanClientTime = total / time.Duration(n)
		r.MeanBytesUp, r.MeanBytesDown = up/n, down/n
	}
}
