package secagg

import (
	"errors"
	"fmt"
	"math"
)

// Limits on the size of an aggregation. They bound what decoders accept
// and what Config.Validate allows.
const (
	// MaxClients is the largest Config.N and the largest client id.
	MaxClients = 1 << 16
	// MaxVectorLen is the largest Config.VectorLen (256 MiB of masked
	// input per client).
	MaxVectorLen = 1 << 26
	// MaxSessionLen is the largest Config.Session, in bytes.
	MaxSessionLen = 256
)

// maxSum is the largest magnitude the sum of quantised inputs may reach:
// the sum is read back as a signed 32-bit integer.
const maxSum = math.MaxInt32

// Config describes one aggregation. The server and every client must use
// the same Config; the coordinator distributes it with the round.
//
// Fixed point: an input coordinate x is clipped to [-Clip, Clip] and
// encoded as round(x·Scale) in Z_{2^32} (two's complement). The sum of N
// clients is exact as long as N·⌊Clip·Scale⌋ ≤ 2^31−1, which Validate
// checks; a Scale of zero picks the largest scale that satisfies it
// ([MaxScale]). The error of the decoded sum is at most N/(2·Scale) per
// coordinate, on top of the clipping.
type Config struct {
	// N is the number of clients sampled for the aggregation; their ids
	// are 1..N. At least 2, at most MaxClients.
	N int
	// Threshold is t, the number of shares needed to rebuild a secret and
	// the least number of clients that must remain in every round. It must
	// be at least 2, at most the neighbourhood size n (N for the complete
	// graph, Neighbours+1 otherwise), and a strict majority of it: 2t > n.
	Threshold int
	// VectorLen is the length of every input vector, 1..MaxVectorLen.
	VectorLen int
	// Clip bounds every input coordinate to [-Clip, Clip]. Must be
	// positive and finite.
	Clip float64
	// Scale is the number of fixed-point units per 1.0. Zero means
	// MaxScale(N, Clip).
	Scale float64
	// Neighbours is k for the SecAgg+ sparse graph: each client masks with
	// and shares secrets to k neighbours only. Zero (the default) means the
	// complete graph of the original protocol. Otherwise an even number in
	// [2, N-1].
	Neighbours int
	// GraphSeed is the public randomness that lays out the sparse graph.
	// Ignored for the complete graph. Choose it fresh and at random for
	// every aggregation, after the participants are fixed.
	GraphSeed [32]byte
	// Session is public context (for example the learning round's id)
	// bound into every derived key and ciphertext, so messages of one
	// aggregation are useless in another. At most MaxSessionLen bytes.
	Session []byte
}

// ErrInvalidConfig is returned (wrapped) when a Config fails Validate.
var ErrInvalidConfig = errors.New("secagg: invalid config")

// MaxScale returns the largest scale at which the sum of n clients'
// inputs, each clipped to [-clip, clip], cannot overflow. It returns 0 when
// n or clip is out of range.
func MaxScale(n int, clip float64) float64 {
	if n < 1 || !(clip > 0) || math.IsInf(clip, 0) {
		return 0
	}
	q := float64(maxSum / n)
	s := q / clip
	// Division may round up; step down until the bound holds.
	for s > 0 && float64(n)*math.Floor(clip*s) > maxSum {
		s = math.Nextafter(s, 0)
	}
	return s
}

// Validate reports whether the Config is usable, with an error wrapping
// ErrInvalidConfig that says what is wrong.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.N < 2 || c.N > MaxClients {
		return bad("N = %d, want 2..%d", c.N, MaxClients)
	}
	if c.Neighbours != 0 {
		if c.Neighbours < 2 || c.Neighbours > c.N-1 || c.Neighbours%2 != 0 {
			return bad("Neighbours = %d, want 0 (complete graph) or an even number in [2, %d]", c.Neighbours, c.N-1)
		}
	}
	n := c.neighbourhood()
	if c.Threshold < 2 || c.Threshold > n {
		return bad("Threshold = %d, want 2..%d (the neighbourhood size)", c.Threshold, n)
	}
	if 2*c.Threshold <= n {
		return bad("Threshold = %d is not a strict majority of the neighbourhood of %d", c.Threshold, n)
	}
	if c.VectorLen < 1 || c.VectorLen > MaxVectorLen {
		return bad("VectorLen = %d, want 1..%d", c.VectorLen, MaxVectorLen)
	}
	if !(c.Clip > 0) || math.IsInf(c.Clip, 0) {
		return bad("Clip = %v, want a positive finite number", c.Clip)
	}
	if c.Scale < 0 || math.IsNaN(c.Scale) || math.IsInf(c.Scale, 0) {
		return bad("Scale = %v, want 0 (automatic) or a positive finite number", c.Scale)
	}
	scale := c.scale()
	q := math.Floor(c.Clip * scale)
	if q < 1 {
		return bad("Clip·Scale = %v is below one fixed-point unit", c.Clip*scale)
	}
	if float64(c.N)*q > maxSum {
		return bad("N·⌊Clip·Scale⌋ = %v overflows the 32-bit sum; use Scale ≤ %v", float64(c.N)*q, MaxScale(c.N, c.Clip))
	}
	if len(c.Session) > MaxSessionLen {
		return bad("Session is %d bytes, at most %d", len(c.Session), MaxSessionLen)
	}
	return nil
}

// neighbourhood is the number of clients that hold shares of one client's
// secrets (the client itself included).
func (c Config) neighbourhood() int {
	if c.complete() {
		return c.N
	}
	return c.Neighbours + 1
}

// complete reports whether the graph is the complete graph.
func (c Config) complete() bool { return c.Neighbours == 0 || c.Neighbours >= c.N-1 }

// scale is the effective fixed-point scale.
func (c Config) scale() float64 {
	if c.Scale == 0 {
		return MaxScale(c.N, c.Clip)
	}
	return c.Scale
}

// quantizer converts between float32 inputs and fixed point.
type quantizer struct {
	scale float64
	clip  float64
	qmax  float64
}

func newQuantizer(c Config) quantizer {
	s := c.scale()
	return quantizer{scale: s, clip: c.Clip, qmax: math.Floor(c.Clip * s)}
}

// quantize writes the fixed-point encoding of x to dst. It rejects NaN
// and infinite coordinates; finite ones are clipped.
func (q quantizer) quantize(dst []uint32, x []float32) error {
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: coordinate %d is %v", ErrInvalidInput, i, v)
		}
		f = math.Round(math.Max(-q.clip, math.Min(q.clip, f)) * q.scale)
		f = math.Max(-q.qmax, math.Min(q.qmax, f))
		dst[i] = uint32(int32(f))
	}
	return nil
}

// dequantize decodes a sum of fixed-point values.
func (q quantizer) dequantize(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	for i, v := range sum {
		out[i] = float64(int32(v)) / q.scale
	}
	return out
}
