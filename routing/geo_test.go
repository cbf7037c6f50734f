package routing

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

var (
	london  = Location{Lat: 51.5074, Lon: -0.1278}
	paris   = Location{Lat: 48.8566, Lon: 2.3522}
	newYork = Location{Lat: 40.7128, Lon: -74.0060}
	sydney  = Location{Lat: -33.8688, Lon: 151.2093}
)

func TestLocationValid(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		l    Location
		want bool
	}{
		{london, true},
		{Location{Lat: 90, Lon: 180}, true},
		{Location{Lat: -90, Lon: -180}, true},
		{Location{Lat: 0, Lon: 5}, true},
		{Location{Lat: -5, Lon: 0}, true},
		{Location{}, false}, // unset
		{Location{Lat: 90.0001, Lon: 0}, false},
		{Location{Lat: 10, Lon: -180.5}, false},
		{Location{Lat: nan, Lon: 10}, false},
		{Location{Lat: 10, Lon: math.Inf(1)}, false},
	}
	for _, tc := range tests {
		if got := tc.l.Valid(); got != tc.want {
			t.Errorf("%+v.Valid() = %v, want %v", tc.l, got, tc.want)
		}
	}
}

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in      string
		want    Location
		wantErr string
	}{
		{"52.52,13.405", Location{Lat: 52.52, Lon: 13.405}, ""},
		{" -33.8688 , 151.2093 ", Location{Lat: -33.8688, Lon: 151.2093}, ""},
		{"90,-180", Location{Lat: 90, Lon: -180}, ""},
		{"", Location{}, "not \"lat,lon\""},
		{"52.52", Location{}, "not \"lat,lon\""},
		{"north,13", Location{}, "latitude"},
		{"52,east", Location{}, "longitude"},
		{"52,13,7", Location{}, "longitude"},
		{"91,0", Location{}, "latitude 91 out of range"},
		{"0,-181", Location{}, "longitude -181 out of range"},
		{"NaN,1", Location{}, "latitude NaN"},
		{"1,Inf", Location{}, "longitude +Inf"},
		{"0,0", Location{}, "reserved"},
		{"1e400,0", Location{}, "latitude"},
	}
	for _, tc := range tests {
		got, err := ParseLocation(tc.in)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidLocation) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseLocation(%q) = %+v, %v; want an error about %q", tc.in, got, err, tc.wantErr)
		}
	}
	// String is the inverse.
	if got, err := ParseLocation(sydney.String()); err != nil || got != sydney {
		t.Fatalf("ParseLocation(%q) = %+v, %v", sydney.String(), got, err)
	}
}

func TestLocationJSON(t *testing.T) {
	b, err := json.Marshal(paris)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"lat":48.8566,"lon":2.3522}`; string(b) != want {
		t.Fatalf("JSON %s, want %s", b, want)
	}
	var unset Location
	if err := json.Unmarshal([]byte(`{}`), &unset); err != nil || unset.Valid() {
		t.Fatalf("empty JSON object gave %+v, %v; want an unset location", unset, err)
	}
}

func TestHaversineKm(t *testing.T) {
	tests := []struct {
		name    string
		a, b    Location
		want    float64
		tolerKm float64
	}{
		{"same point", london, london, 0, 1e-9},
		{"London-Paris", london, paris, 343.5, 1},
		{"London-New York", london, newYork, 5570, 5},
		{"New York-Sydney", newYork, sydney, 15990, 20},
		{"antipodes", Location{Lat: 10, Lon: 20}, Location{Lat: -10, Lon: -160}, math.Pi * EarthRadiusKm, 1e-6},
		{"pole to pole", Location{Lat: 90, Lon: 0}, Location{Lat: -90, Lon: 0}, math.Pi * EarthRadiusKm, 1e-6},
		{"across the date line", Location{Lat: 0, Lon: 179.5}, Location{Lat: 0, Lon: -179.5}, math.Pi * EarthRadiusKm / 180, 1e-6},
	}
	for _, tc := range tests {
		got := HaversineKm(tc.a, tc.b)
		if math.Abs(got-tc.want) > tc.tolerKm {
			t.Errorf("%s: %.3f km, want %.3f ± %g", tc.name, got, tc.want, tc.tolerKm)
		}
		if back := HaversineKm(tc.b, tc.a); math.Abs(back-got) > 1e-9 {
			t.Errorf("%s: not symmetric: %.9f vs %.9f", tc.name, got, back)
		}
	}
}

func TestGeoRTT(t *testing.T) {
	// 2 × km / 200 km/ms × 1.5 + 2 ms.
	want := func(km float64) time.Duration {
		return time.Duration(2*km/200*1.5*float64(time.Millisecond)) + 2*time.Millisecond
	}
	tests := []struct {
		name string
		a, b Location
		want time.Duration
	}{
		{"same city", london, london, 2 * time.Millisecond},
		{"London-Paris", london, paris, want(HaversineKm(london, paris))},
		{"London-New York", london, newYork, want(HaversineKm(london, newYork))},
		{"unset", london, Location{}, UnknownRTT},
		{"invalid", Location{Lat: 100, Lon: 0}, paris, UnknownRTT},
	}
	for _, tc := range tests {
		if got := GeoRTT(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: GeoRTT = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Sanity of the documented figures.
	if got := GeoRTT(london, newYork); got < 85*time.Millisecond || got > 87*time.Millisecond {
		t.Errorf("London-New York %v, documented as about 86ms", got)
	}
	anti := GeoRTT(Location{Lat: 10, Lon: 20}, Location{Lat: -10, Lon: -160})
	if anti < 301*time.Millisecond || anti > 303*time.Millisecond {
		t.Errorf("antipodes %v, documented as about 302ms", anti)
	}
	// Nearer is never slower.
	if !(GeoRTT(london, paris) < GeoRTT(london, newYork) && GeoRTT(london, newYork) < GeoRTT(london, sydney)) {
		t.Error("GeoRTT is not monotone in distance")
	}
}

func TestRTTSourceString(t *testing.T) {
	tests := map[RTTSource]string{
		RTTUnknown:         "unknown",
		RTTFromCoordinates: "coordinates",
		RTTFromGeo:         "geo",
		RTTSource(9):       "RTTSource(9)",
	}
	for s, want := range tests {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
	var zero Candidate
	if zero.RTTSource != RTTUnknown {
		t.Error("the zero Candidate claims an RTT source")
	}
}

func TestEstimateRTTFallback(t *testing.T) {
	converged := func(x, errv float64) *Coordinate {
		c := NewCoordinate(nil)
		c.Vec[0] = x
		c.Error = errv
		return c
	}
	self := converged(0, 0.1)
	peer := converged(0.030, 0.2) // 30 ms away plus two HeightMin
	coordRTT := self.DistanceTo(peer)
	geoRTT := GeoRTT(london, paris)
	if coordRTT == geoRTT {
		t.Fatal("test needs distinct coordinate and geo estimates")
	}
	incompatible := &Coordinate{Vec: []float64{0.01, 0}, Error: 0.1}
	nanCoord := converged(math.NaN(), 0.1)

	tests := []struct {
		name       string
		self, peer *Coordinate
		sl, pl     Location
		wantRTT    time.Duration
		wantSource RTTSource
	}{
		{"coordinates", self, peer, london, paris, coordRTT, RTTFromCoordinates},
		{"coordinates without locations", self, peer, Location{}, Location{}, coordRTT, RTTFromCoordinates},
		{"peer not converged", self, converged(0.030, 0.75), london, paris, geoRTT, RTTFromGeo},
		{"peer fresh", self, NewCoordinate(nil), london, paris, geoRTT, RTTFromGeo},
		{"self not converged", converged(0, 1.0), peer, london, paris, geoRTT, RTTFromGeo},
		{"peer negative error", self, converged(0.030, -0.1), london, paris, geoRTT, RTTFromGeo},
		{"incompatible", self, incompatible, london, paris, geoRTT, RTTFromGeo},
		{"invalid", self, nanCoord, london, paris, geoRTT, RTTFromGeo},
		{"no peer coordinate", self, nil, london, paris, geoRTT, RTTFromGeo},
		{"no coordinates", nil, nil, london, paris, geoRTT, RTTFromGeo},
		{"peer location unset", self, nil, london, Location{}, UnknownRTT, RTTUnknown},
		{"self location invalid", nil, nil, Location{Lat: 95, Lon: 1}, paris, UnknownRTT, RTTUnknown},
		{"nothing", nil, nil, Location{}, Location{}, UnknownRTT, RTTUnknown},
	}
	for _, tc := range tests {
		rtt, src := EstimateRTT(tc.self, tc.peer, tc.sl, tc.pl)
		if rtt != tc.wantRTT || src != tc.wantSource {
			t.Errorf("%s: EstimateRTT = %v, %v; want %v, %v", tc.name, rtt, src, tc.wantRTT, tc.wantSource)
		}
	}
}

func TestEstimateRTTAfterConvergence(t *testing.T) {
	// Coordinates learnt by clients are used once they converge.
	truth := gridTruth(9, 10*time.Millisecond)
	clients := newSimClients(t, 9, DefaultCoordinateConfig())
	a, b := clients[0].GetCoordinate(), clients[8].GetCoordinate()
	if _, src := EstimateRTT(a, b, london, paris); src != RTTFromGeo {
		t.Fatalf("fresh coordinates used: %v", src)
	}
	simulate(t, clients, truth, 300, 5)
	a, b = clients[0].GetCoordinate(), clients[8].GetCoordinate()
	rtt, src := EstimateRTT(a, b, london, paris)
	if src != RTTFromCoordinates {
		t.Fatalf("converged coordinates (errors %g, %g) not used: %v", a.Error, b.Error, src)
	}
	if want := truth[0][8]; math.Abs(float64(rtt-want)) > 0.05*float64(want) {
		t.Fatalf("estimate %v, want %v ± 5%%", rtt, want)
	}
}
