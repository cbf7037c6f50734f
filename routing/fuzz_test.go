package routing

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

// FuzzCoordinateUnmarshal checks that decoding arbitrary bytes never panics,
// that rejections wrap ErrInvalidCoordinate and leave the target alone, and
// that every accepted input is canonical (re-encodes to the same bytes) and
// safe to feed to the algorithm. The committed corpus under
// testdata/fuzz/FuzzCoordinateUnmarshal holds valid encodings of several
// sizes and near misses of each check.
func FuzzCoordinateUnmarshal(f *testing.F) {
	for _, c := range []*Coordinate{
		NewCoordinate(nil),
		{Vec: []float64{0.01}, Error: 0.3, Adjustment: -0.001, Height: 0.0002},
	} {
		b, err := c.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{2, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Coordinate
		if err := c.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrInvalidCoordinate) {
				t.Fatalf("error %q does not wrap ErrInvalidCoordinate", err)
			}
			if c.Vec != nil || c.Error != 0 || c.Adjustment != 0 || c.Height != 0 {
				t.Fatalf("failed decode modified the target: %+v", c)
			}
			return
		}
		if !c.IsValid() || c.Error < 0 || c.Height < 0 {
			t.Fatalf("accepted an invalid coordinate %+v", c)
		}
		again, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted coordinate does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("round trip changed the bytes:\n in  %x\n out %x", data, again)
		}
		if d := c.DistanceTo(&c); d < 0 {
			t.Fatalf("negative self-distance %v", d)
		}
		// Any accepted coordinate can be fed to a client without harm.
		cfg := DefaultCoordinateConfig()
		cfg.Dimensionality = uint(len(c.Vec))
		cl, err := NewCoordinateClientSeeded(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cl.Update("peer", &c, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("client rejected a decoded coordinate: %v", err)
		}
		if !got.IsValid() {
			t.Fatalf("client coordinate invalid after update: %+v", got)
		}
		if _, src := EstimateRTT(got, &c, Location{}, Location{}); src == RTTFromGeo {
			t.Fatal("geo estimate without locations")
		}
	})
}

// FuzzParseLocation checks that ParseLocation never panics, rejects with
// ErrInvalidLocation, and accepts only valid locations that survive a round
// trip through String.
func FuzzParseLocation(f *testing.F) {
	f.Add("52.52,13.405")
	f.Add("-33.8688, 151.2093")
	f.Add("0,0")
	f.Add("91,0")
	f.Add("NaN,1")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLocation(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidLocation) {
				t.Fatalf("error %q does not wrap ErrInvalidLocation", err)
			}
			if l != (Location{}) {
				t.Fatalf("error with a non-zero location %+v", l)
			}
			return
		}
		if !l.Valid() {
			t.Fatalf("ParseLocation(%q) accepted invalid %+v", s, l)
		}
		back, err := ParseLocation(l.String())
		if err != nil || back != l {
			t.Fatalf("round trip of %+v via %q gave %+v, %v", l, l.String(), back, err)
		}
		if km := HaversineKm(l, Location{Lat: 1, Lon: 1}); math.IsNaN(km) || km < 0 || km > math.Pi*EarthRadiusKm+1e-6 {
			t.Fatalf("distance %g km out of range", km)
		}
		if rtt := GeoRTT(l, l); rtt != GeoRTTFloor {
			t.Fatalf("GeoRTT to itself = %v, want the floor", rtt)
		}
	})
}
