package routing

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// approx fails unless got is within 1e-9 of want.
func approx(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Fatalf("%s = %.12f, want %.12f", what, got, want)
	}
}

func TestNewCoordinate(t *testing.T) {
	cfg := DefaultCoordinateConfig()
	c := NewCoordinate(cfg)
	if len(c.Vec) != 8 || c.Error != 1.5 || c.Adjustment != 0 || c.Height != 10e-6 {
		t.Fatalf("NewCoordinate(default) = %+v", c)
	}
	for i, v := range c.Vec {
		if v != 0 {
			t.Fatalf("Vec[%d] = %g, want 0", i, v)
		}
	}
	if got := NewCoordinate(nil); !reflect.DeepEqual(got, c) {
		t.Fatalf("NewCoordinate(nil) = %+v, want the default %+v", got, c)
	}
}

func TestCoordinateClone(t *testing.T) {
	c := &Coordinate{Vec: []float64{1, 2}, Error: 0.5, Adjustment: -0.1, Height: 0.2}
	d := c.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("clone %+v differs from %+v", d, c)
	}
	d.Vec[0] = 99
	if c.Vec[0] != 1 {
		t.Fatal("clone shares Vec with the original")
	}
	if (*Coordinate)(nil).Clone() != nil {
		t.Fatal("clone of nil is not nil")
	}
}

func TestCoordinateIsValid(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		c    *Coordinate
		want bool
	}{
		{"nil", nil, false},
		{"origin", NewCoordinate(nil), true},
		{"nan vec", &Coordinate{Vec: []float64{0, nan}}, false},
		{"inf vec", &Coordinate{Vec: []float64{-inf}}, false},
		{"nan error", &Coordinate{Vec: []float64{0}, Error: nan}, false},
		{"inf adjustment", &Coordinate{Vec: []float64{0}, Adjustment: inf}, false},
		{"nan height", &Coordinate{Vec: []float64{0}, Height: nan}, false},
		{"negative but finite", &Coordinate{Vec: []float64{-1}, Error: -1, Height: -1}, true},
	}
	for _, tc := range tests {
		if got := tc.c.IsValid(); got != tc.want {
			t.Errorf("%s: IsValid() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCoordinateIsCompatibleWith(t *testing.T) {
	two := &Coordinate{Vec: []float64{0, 0}}
	tests := []struct {
		name string
		a, b *Coordinate
		want bool
	}{
		{"same dims", two, &Coordinate{Vec: []float64{1, 1}}, true},
		{"other dims", two, &Coordinate{Vec: []float64{1, 1, 1}}, false},
		{"nil other", two, nil, false},
		{"nil self", nil, two, false},
		{"both empty", &Coordinate{}, &Coordinate{}, false},
	}
	for _, tc := range tests {
		if got := tc.a.IsCompatibleWith(tc.b); got != tc.want {
			t.Errorf("%s: IsCompatibleWith = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCoordinateDistanceTo(t *testing.T) {
	a := &Coordinate{Vec: []float64{0, 0, 0}, Height: 0.001}
	b := &Coordinate{Vec: []float64{0.003, 0.004, 0}, Height: 0.002}
	// 5 ms Euclidean + 1 ms + 2 ms heights.
	if got, want := a.DistanceTo(b), 8*time.Millisecond; got != want {
		t.Fatalf("distance = %v, want %v", got, want)
	}
	if a.DistanceTo(b) != b.DistanceTo(a) {
		t.Fatal("distance is not symmetric")
	}

	// Adjustments apply when the sum stays positive...
	a.Adjustment, b.Adjustment = 0.001, 0.0005
	if got, want := a.DistanceTo(b), 9500*time.Microsecond; got != want {
		t.Fatalf("adjusted distance = %v, want %v", got, want)
	}
	// ...and are ignored when they would make it negative.
	a.Adjustment, b.Adjustment = -0.005, -0.005
	if got, want := a.DistanceTo(b), 8*time.Millisecond; got != want {
		t.Fatalf("over-adjusted distance = %v, want the raw %v", got, want)
	}

	// Undefined distances do not panic.
	if got := a.DistanceTo(&Coordinate{Vec: []float64{1}}); got != UnknownRTT {
		t.Fatalf("incompatible distance = %v, want UnknownRTT", got)
	}
	if got := a.DistanceTo(&Coordinate{Vec: []float64{math.NaN(), 0, 0}}); got != UnknownRTT {
		t.Fatalf("NaN distance = %v, want UnknownRTT", got)
	}
	if got := a.DistanceTo(nil); got != UnknownRTT {
		t.Fatalf("nil distance = %v, want UnknownRTT", got)
	}

	// Huge but finite coordinates saturate instead of overflowing.
	far := &Coordinate{Vec: []float64{1e300, 0, 0}}
	if got := a.DistanceTo(far); got != time.Duration(math.MaxInt64) {
		t.Fatalf("huge distance = %v, want saturation", got)
	}
}

func TestSecondsToDuration(t *testing.T) {
	tests := []struct {
		s    float64
		want time.Duration
	}{
		{0.25, 250 * time.Millisecond},
		{-1, 0},
		{math.NaN(), 0},
		{math.Inf(1), time.Duration(math.MaxInt64)},
		{1e11, time.Duration(math.MaxInt64)},
	}
	for _, tc := range tests {
		if got := secondsToDuration(tc.s); got != tc.want {
			t.Errorf("secondsToDuration(%g) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestUnitVectorAtCoincident(t *testing.T) {
	cl, err := NewCoordinateClientSeeded(nil, 7)
	if err != nil {
		t.Fatal(err)
	}
	u, mag := unitVectorAt([]float64{1, 2, 3}, []float64{1, 2, 3}, cl.rng)
	approx(t, "magnitude of the random unit vector", magnitude(u), 1)
	if mag != 0 {
		t.Fatalf("distance between coincident points = %g, want 0", mag)
	}
	u, mag = unitVectorAt([]float64{3, 4}, []float64{0, 0}, cl.rng)
	approx(t, "u[0]", u[0], 0.6)
	approx(t, "u[1]", u[1], 0.8)
	approx(t, "distance", mag, 5)
}

func TestCoordinateJSON(t *testing.T) {
	c := &Coordinate{Vec: []float64{0.5, -0.25}, Error: 0.1, Adjustment: -0.01, Height: 0.002}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vec":[0.5,-0.25],"error":0.1,"adjustment":-0.01,"height":0.002}`
	if string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
}

// encodeRaw builds an encoding by hand, without MarshalBinary's checks.
func encodeRaw(version, dims byte, floats ...float64) []byte {
	b := []byte{version, dims}
	for _, f := range floats {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return b
}

func TestCoordinateBinaryGolden(t *testing.T) {
	c := &Coordinate{Vec: []float64{1, -2}, Error: 0.5, Adjustment: -0.25, Height: 0.125}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const want = "0102" +
		"000000000000f03f" + // 1
		"00000000000000c0" + // -2
		"000000000000e03f" + // 0.5
		"000000000000d0bf" + // -0.25
		"000000000000c03f" // 0.125
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding = %s, want %s", got, want)
	}
	if got, want := len(mustMarshal(t, NewCoordinate(nil))), 90; got != want {
		t.Fatalf("default coordinate encodes to %d bytes, want %d", got, want)
	}
}

func mustMarshal(t *testing.T, c *Coordinate) []byte {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCoordinateBinaryRoundTrip(t *testing.T) {
	tests := []*Coordinate{
		NewCoordinate(nil),
		{Vec: []float64{0.001}, Error: 0, Adjustment: 0, Height: 0},
		{Vec: make([]float64, MaxDimensionality), Error: 1.5, Adjustment: -MaxCoordinateComponent, Height: MaxCoordinateComponent},
		{Vec: []float64{math.Copysign(0, -1), 5e-324, -0.3}, Error: 0.2, Adjustment: 0.01, Height: 1e-5},
	}
	for _, c := range tests {
		b := mustMarshal(t, c)
		var d Coordinate
		if err := d.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode of %+v: %v", c, err)
		}
		if !bytes.Equal(mustMarshal(t, &d), b) {
			t.Fatalf("round trip of %+v changed the bytes", c)
		}
		for i := range c.Vec {
			if math.Float64bits(c.Vec[i]) != math.Float64bits(d.Vec[i]) {
				t.Fatalf("Vec[%d] = %g, want %g", i, d.Vec[i], c.Vec[i])
			}
		}
		if c.Error != d.Error || c.Adjustment != d.Adjustment || c.Height != d.Height {
			t.Fatalf("decoded %+v, want %+v", d, c)
		}
	}
}

func TestCoordinateUnmarshalRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	ok := func(dims int) []float64 { return make([]float64, dims+3) }
	with := func(dims, i int, v float64) []float64 {
		f := ok(dims)
		f[i] = v
		return f
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "0 bytes"},
		{"one byte", []byte{1}, "1 bytes"},
		{"version 0", encodeRaw(0, 1, ok(1)...), "unsupported version 0"},
		{"version 2", encodeRaw(2, 1, ok(1)...), "unsupported version 2"},
		{"zero dims", encodeRaw(1, 0, 0, 0, 0), "dimensionality 0"},
		{"17 dims", encodeRaw(1, 17, ok(17)...), "dimensionality 17"},
		{"255 dims", encodeRaw(1, 255), "dimensionality 255"},
		{"short", encodeRaw(1, 2, ok(2)...)[:41], "41 bytes for 2 dimensions, want exactly 42"},
		{"long", append(encodeRaw(1, 2, ok(2)...), 0), "43 bytes"},
		{"header only", []byte{1, 8}, "2 bytes for 8 dimensions"},
		{"NaN vec", encodeRaw(1, 2, with(2, 1, nan)...), "vec[1] is NaN"},
		{"Inf vec", encodeRaw(1, 2, with(2, 0, -inf)...), "vec[0] is infinite"},
		{"NaN error", encodeRaw(1, 2, with(2, 2, nan)...), "error is NaN"},
		{"Inf adjustment", encodeRaw(1, 2, with(2, 3, inf)...), "adjustment is infinite"},
		{"NaN height", encodeRaw(1, 2, with(2, 4, nan)...), "height is NaN"},
		{"huge vec", encodeRaw(1, 2, with(2, 0, 2e6)...), "vec[0] 2e+06 exceeds"},
		{"huge adjustment", encodeRaw(1, 2, with(2, 3, -2e6)...), "adjustment -2e+06 exceeds"},
		{"negative error", encodeRaw(1, 2, with(2, 2, -0.1)...), "negative error"},
		{"negative height", encodeRaw(1, 2, with(2, 4, -1e-9)...), "negative height"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := &Coordinate{Vec: []float64{7}, Error: 1, Adjustment: 2, Height: 3}
			c := orig.Clone()
			err := c.UnmarshalBinary(tc.data)
			if err == nil {
				t.Fatalf("accepted %x", tc.data)
			}
			if !errors.Is(err, ErrInvalidCoordinate) {
				t.Fatalf("error %q does not wrap ErrInvalidCoordinate", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
			if !reflect.DeepEqual(c, orig) {
				t.Fatalf("failed decode modified the coordinate: %+v", c)
			}
		})
	}
	var nilCoord *Coordinate
	if err := nilCoord.UnmarshalBinary(encodeRaw(1, 1, ok(1)...)); err == nil {
		t.Fatal("UnmarshalBinary into nil succeeded")
	}
}

func TestCoordinateMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		c    *Coordinate
	}{
		{"nil", nil},
		{"no dims", &Coordinate{}},
		{"17 dims", &Coordinate{Vec: make([]float64, 17)}},
		{"NaN", &Coordinate{Vec: []float64{math.NaN()}}},
		{"negative height", &Coordinate{Vec: []float64{0}, Height: -1}},
		{"huge error", &Coordinate{Vec: []float64{0}, Error: 1e7}},
	}
	for _, tc := range tests {
		if b, err := tc.c.MarshalBinary(); err == nil || !errors.Is(err, ErrInvalidCoordinate) {
			t.Errorf("%s: MarshalBinary = %x, %v; want an ErrInvalidCoordinate", tc.name, b, err)
		}
	}
}

func TestUnmarshalDoesNotAlias(t *testing.T) {
	b := mustMarshal(t, &Coordinate{Vec: []float64{1, 2}, Error: 0.5})
	var c Coordinate
	if err := c.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	if c.Vec[0] != 1 || c.Vec[1] != 2 {
		t.Fatalf("decoded Vec changed with the input buffer: %v", c.Vec)
	}
}
