package secagg

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{N: 10, Threshold: 6, VectorLen: 100, Clip: 1}
	tests := []struct {
		name   string
		edit   func(c *Config)
		errHas string // empty: valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"explicit scale", func(c *Config) { c.Scale = 1 << 20 }, ""},
		{"largest safe scale", func(c *Config) { c.Scale = MaxScale(c.N, c.Clip) }, ""},
		{"one client", func(c *Config) { c.N = 1 }, "N = 1"},
		{"too many clients", func(c *Config) { c.N = MaxClients + 1 }, "N = "},
		{"threshold 1", func(c *Config) { c.Threshold = 1 }, "Threshold = 1"},
		{"threshold above N", func(c *Config) { c.Threshold = 11 }, "Threshold = 11"},
		{"threshold not a majority", func(c *Config) { c.Threshold = 5 }, "strict majority"},
		{"threshold N", func(c *Config) { c.Threshold = 10 }, ""},
		{"sparse", func(c *Config) { c.Neighbours, c.Threshold = 4, 3 }, ""},
		{"sparse odd", func(c *Config) { c.Neighbours, c.Threshold = 5, 4 }, "Neighbours = 5"},
		{"sparse too many", func(c *Config) { c.Neighbours = 10 }, "Neighbours = 10"},
		{"sparse threshold above neighbourhood", func(c *Config) { c.Neighbours, c.Threshold = 4, 6 }, "Threshold = 6"},
		{"sparse threshold not a majority", func(c *Config) { c.Neighbours, c.Threshold = 4, 2 }, "strict majority"},
		{"empty vector", func(c *Config) { c.VectorLen = 0 }, "VectorLen = 0"},
		{"huge vector", func(c *Config) { c.VectorLen = MaxVectorLen + 1 }, "VectorLen"},
		{"zero clip", func(c *Config) { c.Clip = 0 }, "Clip = 0"},
		{"NaN clip", func(c *Config) { c.Clip = math.NaN() }, "Clip = NaN"},
		{"infinite clip", func(c *Config) { c.Clip = math.Inf(1) }, "Clip = +Inf"},
		{"negative scale", func(c *Config) { c.Scale = -1 }, "Scale = -1"},
		{"NaN scale", func(c *Config) { c.Scale = math.NaN() }, "Scale = NaN"},
		{"scale too small", func(c *Config) { c.Scale = 0.5 }, "below one fixed-point unit"},
		{"scale overflows", func(c *Config) { c.Scale = 1 << 28 }, "overflows"},
		{"scale just too big", func(c *Config) { c.Scale = math.Floor(math.MaxInt32/10) + 1 }, "overflows"},
		{"long session", func(c *Config) { c.Session = make([]byte, MaxSessionLen+1) }, "Session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig mentioning %q", err, tc.errHas)
			}
		})
	}
}

func TestMaxScale(t *testing.T) {
	for _, tc := range []struct {
		n    int
		clip float64
	}{{1, 1}, {2, 1}, {10, 1}, {100, 0.5}, {1000, 3}, {MaxClients, 1e-3}, {7, 1e6}, {3, 0.1}} {
		s := MaxScale(tc.n, tc.clip)
		if s <= 0 {
			t.Fatalf("MaxScale(%d, %v) = %v", tc.n, tc.clip, s)
		}
		q := math.Floor(tc.clip * s)
		if float64(tc.n)*q > math.MaxInt32 {
			t.Errorf("MaxScale(%d, %v) = %v overflows: n·q = %v", tc.n, tc.clip, s, float64(tc.n)*q)
		}
		// It is the largest such scale up to one unit of q.
		if float64(tc.n)*(q+1) <= math.MaxInt32 {
			t.Errorf("MaxScale(%d, %v) = %v is not maximal (q = %v)", tc.n, tc.clip, s, q)
		}
	}
	for _, bad := range []struct {
		n    int
		clip float64
	}{{0, 1}, {10, 0}, {10, -1}, {10, math.NaN()}, {10, math.Inf(1)}} {
		if s := MaxScale(bad.n, bad.clip); s != 0 {
			t.Errorf("MaxScale(%d, %v) = %v, want 0", bad.n, bad.clip, s)
		}
	}
}

func TestQuantize(t *testing.T) {
	cfg := Config{N: 4, Threshold: 3, VectorLen: 1, Clip: 2, Scale: 100}
	q := newQuantizer(cfg)
	tests := []struct {
		in   float32
		want int32
	}{
		{0, 0}, {1, 100}, {-1, -100}, {0.004, 0}, {0.006, 1}, {-0.006, -1},
		{2, 200}, {-2, -200}, {2.5, 200}, {-1e30, -200}, {float32(math.SmallestNonzeroFloat32), 0},
	}
	for _, tc := range tests {
		var out [1]uint32
		if err := q.quantize(out[:], []float32{tc.in}); err != nil {
			t.Fatalf("quantize(%v): %v", tc.in, err)
		}
		if int32(out[0]) != tc.want {
			t.Errorf("quantize(%v) = %d, want %d", tc.in, int32(out[0]), tc.want)
		}
	}
	// Clip·Scale not an integer: rounding must not pass ⌊Clip·Scale⌋.
	q2 := newQuantizer(Config{N: 4, Threshold: 3, VectorLen: 1, Clip: 1, Scale: 10.7})
	var out [1]uint32
	if err := q2.quantize(out[:], []float32{1}); err != nil || int32(out[0]) != 10 {
		t.Errorf("quantize(1) at scale 10.7 = %d, %v; want 10", int32(out[0]), err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		if err := q.quantize(out[:], []float32{bad}); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("quantize(%v): %v, want ErrInvalidInput", bad, err)
		}
	}
	// The extreme sum decodes without wrapping.
	full := Config{N: 10, Threshold: 6, VectorLen: 1, Clip: 1}
	qf := newQuantizer(full)
	var acc, v [1]uint32
	for range full.N {
		if err := qf.quantize(v[:], []float32{-1}); err != nil {
			t.Fatal(err)
		}
		acc[0] += v[0]
	}
	if got := qf.dequantize(acc[:])[0]; math.Abs(got+10) > 10/qf.scale {
		t.Errorf("sum of 10 × -Clip decodes to %v, want -10", got)
	}
}
