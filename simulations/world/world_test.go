package world

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestMetroTableSanity(t *testing.T) {
	ms := Metros()
	if len(ms) < 100 {
		t.Fatalf("%d metros, want at least 100", len(ms))
	}
	names := map[string]bool{}
	continents := map[string]int{}
	total := 0.0
	for _, m := range ms {
		key := m.Name + "/" + m.Country
		if names[key] {
			t.Errorf("duplicate metro %s", key)
		}
		names[key] = true
		if m.Lat < -90 || m.Lat > 90 || m.Lon < -180 || m.Lon > 180 {
			t.Errorf("%s: coordinates %g,%g out of range", m.Name, m.Lat, m.Lon)
		}
		if m.Population < 1 || m.Population > 40 {
			t.Errorf("%s: population %gM implausible for a listed metro", m.Name, m.Population)
		}
		if m.UTCOffset < -12 || m.UTCOffset > 14 {
			t.Errorf("%s: UTC offset %g out of range", m.Name, m.UTCOffset)
		}
		if len(m.Country) != 2 {
			t.Errorf("%s: country %q is not an ISO alpha-2 code", m.Name, m.Country)
		}
		// The UTC offset should roughly follow longitude (15° per hour);
		// China and western Europe are the well-known exceptions, a
		// wrong sign is not.
		if d := math.Abs(m.UTCOffset - m.Lon/15); d > 3.5 {
			t.Errorf("%s: UTC offset %g far from longitude %g", m.Name, m.UTCOffset, m.Lon)
		}
		continents[m.Continent]++
		total += m.Population
	}
	for _, c := range []string{Africa, Asia, Europe, NorthAmerica, SouthAmerica, Oceania} {
		if continents[c] == 0 {
			t.Errorf("no metro in %s", c)
		}
	}
	if len(continents) != 6 {
		t.Errorf("continents %v, want exactly the six inhabited ones", continents)
	}
	if total < 1000 || total > 2500 {
		t.Errorf("total population %gM implausible", total)
	}
	// Spot checks: Tokyo is the largest; a few known positions.
	for _, m := range ms {
		if m.Population > 37.4 {
			t.Errorf("%s larger than Tokyo", m.Name)
		}
	}
	for name, r := range cloudRegions {
		found := false
		for _, m := range ms {
			found = found || m.Name == r
		}
		if !found {
			t.Errorf("cloud region %s: metro %q not in the table", name, r)
		}
	}
}

func TestKnownDistances(t *testing.T) {
	w, err := Build(Config{Seed: 1, EdgeSites: 1, CentralRegions: []string{"us-east", "eu-west", "ap-southeast", "ap-northeast", "au-southeast", "uk-south"}})
	if err != nil {
		t.Fatal(err)
	}
	id := map[string]int{}
	for _, c := range w.Centrals() {
		id[w.Sites[c].Region] = c
	}
	cases := []struct {
		a, b   string
		km, tl float64
	}{
		{"uk-south", "eu-west", 464, 30},   // London–Dublin
		{"us-east", "uk-south", 5900, 100}, // Washington–London
		{"ap-southeast", "au-southeast", 6300, 100},
		{"ap-northeast", "ap-southeast", 5320, 100},
	}
	for _, c := range cases {
		got := w.KmBetween(id[c.a], id[c.b])
		if math.Abs(got-c.km) > c.tl {
			t.Errorf("%s–%s: %.0f km, want %.0f ± %.0f", c.a, c.b, got, c.km, c.tl)
		}
		// Central to central: no last mile, 200 km/ms × 1.5.
		ow := w.OneWay(id[c.a], id[c.b])
		want := time.Duration(got / 200 * 1.5 * float64(time.Millisecond))
		if d := ow - want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%s–%s OneWay %v, want %v", c.a, c.b, ow, want)
		}
	}
}

func TestBuildPlacement(t *testing.T) {
	w, err := Build(Config{Seed: 3, EdgeSites: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if w.EdgeCount() != 1000 || len(w.Sites) != 1003 {
		t.Fatalf("EdgeCount %d, sites %d; want 1000, 1003", w.EdgeCount(), len(w.Sites))
	}
	per := make([]int, len(w.Metros))
	for i, s := range w.Sites {
		if s.ID != i {
			t.Fatalf("site %d has ID %d", i, s.ID)
		}
		if i < 1000 && s.Central || i >= 1000 && !s.Central {
			t.Fatalf("site %d Central=%v in the wrong block", i, s.Central)
		}
		if s.Region == "" {
			t.Fatalf("site %d has no region", i)
		}
		if !s.Central {
			per[s.Metro]++
			m := w.Metros[s.Metro]
			if d := w.KmBetween(i, w.Nearest(m.Lat, m.Lon, func(x Site) bool { return x.Central })); d < 0 {
				t.Fatal("negative distance")
			}
			off := angle(unit(m.Lat, m.Lon), w.xyz[i]) * EarthRadiusKm
			if off > 8+4*math.Sqrt(m.Population)+0.5 {
				t.Errorf("site %d %.1f km from %s's centre", i, off, m.Name)
			}
		}
	}
	// Tokyo (37.4M) gets several sites, Auckland (1.7M) fewer, in proportion.
	var tokyo, auck int
	for i, m := range w.Metros {
		switch m.Name {
		case "Tokyo":
			tokyo = per[i]
		case "Auckland":
			auck = per[i]
		}
	}
	if tokyo < 28 || tokyo > 38 || auck < 1 || auck > 3 {
		t.Errorf("Tokyo %d sites, Auckland %d; want about 33 and 1", tokyo, auck)
	}
	// Regions: a site in Paris belongs to eu-west, Sydney to ap-southeast.
	for _, s := range w.Sites[:1000] {
		switch w.Metros[s.Metro].Name {
		case "Paris":
			if s.Region != "eu-west" {
				t.Errorf("Paris site in region %s", s.Region)
			}
		case "Sydney":
			if s.Region != "ap-southeast" {
				t.Errorf("Sydney site in region %s", s.Region)
			}
		case "Chicago":
			if s.Region != "us-east" {
				t.Errorf("Chicago site in region %s", s.Region)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := Build(Config{Seed: 9, EdgeSites: 300})
	b, _ := Build(Config{Seed: 9, EdgeSites: 300})
	c, _ := Build(Config{Seed: 10, EdgeSites: 300})
	same := true
	for i := range a.Sites {
		if a.Sites[i] != b.Sites[i] {
			t.Fatalf("site %d differs between equal seeds", i)
		}
		same = same && a.Sites[i] == c.Sites[i]
	}
	if same {
		t.Fatal("different seeds gave identical worlds")
	}
}

func TestLatencyModel(t *testing.T) {
	w, err := Build(Config{Seed: 1, EdgeSites: 200})
	if err != nil {
		t.Fatal(err)
	}
	lm := DefaultLastMile
	if w.OneWay(5, 5) != 0 {
		t.Error("OneWay to self not zero")
	}
	c := w.Centrals()[0]
	for a := range 50 {
		for b := range 50 {
			if a == b {
				continue
			}
			d := w.OneWay(a, b)
			if d != w.OneWay(b, a) {
				t.Fatalf("OneWay(%d,%d) not symmetric", a, b)
			}
			if d < 2*lm {
				t.Fatalf("edge-edge %v below two last miles", d)
			}
		}
		if d := w.OneWay(a, c); d < lm || d != w.OneWay(c, a) {
			t.Fatalf("edge-central %v", d)
		}
	}
	// Triangle-ish: via a third site is never shorter than direct minus
	// the last miles counted twice.
	for a := range 20 {
		for b := range 20 {
			for k := range 20 {
				if a == b || b == k || a == k {
					continue
				}
				if w.OneWay(a, b) > w.OneWay(a, k)+w.OneWay(k, b) {
					t.Fatalf("triangle inequality broken at %d,%d via %d", a, b, k)
				}
			}
		}
	}
	// FromPoint of a client at a site's metro centre is close to 2 last miles.
	s := w.Sites[0]
	m := w.Metros[s.Metro]
	if d := w.FromPoint(m.Lat, m.Lon, 0); d < 2*lm || d > 2*lm+time.Millisecond {
		t.Errorf("client in the metro: %v, want about %v", d, 2*lm)
	}
	// Jitter: mean near 1+Jitter, never below OneWay.
	r := rand.New(rand.NewPCG(1, 2))
	base := w.OneWay(0, 150)
	sum := 0.0
	for range 20000 {
		d := w.Sample(r, 0, 150)
		if d < base {
			t.Fatalf("Sample %v below OneWay %v", d, base)
		}
		sum += float64(d)
	}
	if mean := sum / 20000 / float64(base); mean < 1.09 || mean > 1.11 {
		t.Errorf("mean jitter factor %.3f, want 1.10", mean)
	}
	nj, _ := Build(Config{Seed: 1, EdgeSites: 200, Jitter: NoJitter, LastMile: NoLastMile})
	if nj.Sample(r, 0, 150) != nj.OneWay(0, 150) || nj.OneWay(0, 1) >= w.OneWay(0, 1) {
		t.Error("NoJitter/NoLastMile not honoured")
	}
}

func TestBandwidthClasses(t *testing.T) {
	w, _ := Build(Config{Seed: 1, EdgeSites: 200})
	cs := w.Centrals()
	var same, other int = -1, -1
	for i := 1; i < w.EdgeCount(); i++ {
		if w.Sites[i].Metro == w.Sites[0].Metro && same < 0 {
			same = i
		}
		if w.Sites[i].Metro != w.Sites[0].Metro && other < 0 {
			other = i
		}
	}
	if same < 0 || other < 0 {
		t.Fatal("test world lacks a same-metro or other-metro pair")
	}
	if got := w.Bandwidth(0, same); got != BandwidthMetro {
		t.Errorf("same metro %g", got)
	}
	if got := w.Bandwidth(0, other); got != BandwidthWAN {
		t.Errorf("WAN %g", got)
	}
	if got := w.Bandwidth(0, cs[0]); got != BandwidthEdgeCentral || w.Bandwidth(cs[0], 0) != got {
		t.Errorf("edge-central %g", got)
	}
	if got := w.Bandwidth(cs[0], cs[1]); got != BandwidthBackbone {
		t.Errorf("backbone %g", got)
	}
}

func TestNearest(t *testing.T) {
	w, _ := Build(Config{Seed: 1, EdgeSites: 200})
	// London's centre: nearest central of the defaults is eu-west (Dublin).
	c := w.Nearest(51.5, -0.12, func(s Site) bool { return s.Central })
	if w.Sites[c].Region != "eu-west" {
		t.Errorf("nearest central to London is %s", w.Sites[c].Region)
	}
	e := w.Nearest(35.68, 139.65, func(s Site) bool { return !s.Central })
	if w.Metros[w.Sites[e].Metro].Name != "Tokyo" {
		t.Errorf("nearest edge to Tokyo is in %s", w.Metros[w.Sites[e].Metro].Name)
	}
	if w.Nearest(0, 0, func(Site) bool { return false }) != -1 {
		t.Error("Nearest with nothing accepted not -1")
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []Config{
		{EdgeSites: 0},
		{EdgeSites: MaxEdgeSites + 1},
		{EdgeSites: 10, CentralRegions: []string{"mars-north"}},
		{EdgeSites: 10, CentralRegions: []string{"us-east", "us-east"}},
		{EdgeSites: 10, RouteInflation: 0.5},
		{EdgeSites: 10, RouteInflation: math.NaN()},
		{EdgeSites: 10, LastMile: -5},
		{EdgeSites: 10, Jitter: -0.5},
		{EdgeSites: 10, Jitter: math.Inf(1)},
	}
	for i, cfg := range bad {
		if _, err := Build(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: err %v, want ErrInvalidConfig", i, err)
		}
	}
}

func BenchmarkOneWay(b *testing.B) {
	w, _ := Build(Config{Seed: 1, EdgeSites: 10000})
	n := len(w.Sites)
	var sink time.Duration
	for i := range b.N {
		sink += w.OneWay(i%n, (i*7919)%n)
	}
	_ = sink
}
