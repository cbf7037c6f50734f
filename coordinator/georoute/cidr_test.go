package georoute

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/routing"
)

const sampleTable = `# Petrel CIDR table
10.0.0.0/8        corp
10.1.0.0/16       eu-west    48.8566,2.3522   # Paris
10.1.2.0/24       eu-central 52.52, 13.405
10.1.2.128/25     eu-north
0.0.0.0/0         world

2001:db8::/32     us-east    40.7128,-74.006
2001:db8:1::/48   us-west
	192.168.0.0/16	lan
`

func TestParseCIDRTableAndLookup(t *testing.T) {
	tab, err := ParseCIDRTable(strings.NewReader(sampleTable))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 8 {
		t.Fatalf("Len() = %d, want 8", tab.Len())
	}
	paris := routing.Location{Lat: 48.8566, Lon: 2.3522}
	berlin := routing.Location{Lat: 52.52, Lon: 13.405}
	ny := routing.Location{Lat: 40.7128, Lon: -74.006}
	tests := []struct {
		ip     string
		region string
		loc    routing.Location
		hasLoc bool
		ok     bool
	}{
		{"10.9.9.9", "corp", routing.Location{}, false, true},
		{"10.1.0.1", "eu-west", paris, true, true},
		{"10.1.2.1", "eu-central", berlin, true, true},
		{"10.1.2.127", "eu-central", berlin, true, true},
		{"10.1.2.128", "eu-north", routing.Location{}, false, true},
		{"10.1.2.255", "eu-north", routing.Location{}, false, true},
		{"10.1.3.0", "eu-west", paris, true, true},
		{"8.8.8.8", "world", routing.Location{}, false, true},
		{"192.168.3.4", "lan", routing.Location{}, false, true},
		{"::ffff:10.1.2.200", "eu-north", routing.Location{}, false, true},
		{"2001:db8:2::1", "us-east", ny, true, true},
		{"2001:db8:1:ffff::1", "us-west", routing.Location{}, false, true},
		{"fe80::1%eth0", "", routing.Location{}, false, false},
		{"2001:db8:1::1%eth0", "us-west", routing.Location{}, false, true},
		{"2002::1", "", routing.Location{}, false, false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		region, loc, hasLoc, ok := tab.Lookup(ip)
		if region != tt.region || loc != tt.loc || hasLoc != tt.hasLoc || ok != tt.ok {
			t.Errorf("Lookup(%s) = %q, %v, %v, %v; want %q, %v, %v, %v", tt.ip, region, loc, hasLoc, ok, tt.region, tt.loc, tt.hasLoc, tt.ok)
		}
	}
	if _, _, _, ok := tab.Lookup(netip.Addr{}); ok {
		t.Error("Lookup of the zero Addr succeeded")
	}
	var nilTab *CIDRTable
	if _, _, _, ok := nilTab.Lookup(netip.MustParseAddr("10.0.0.1")); ok || nilTab.Len() != 0 {
		t.Error("nil table matched")
	}
}

func TestParseCIDRTableEmpty(t *testing.T) {
	tab, err := ParseCIDRTable(strings.NewReader("\n# nothing\n   \n"))
	if err != nil || tab.Len() != 0 {
		t.Fatalf("got %v, %v", tab, err)
	}
	if _, _, _, ok := tab.Lookup(netip.MustParseAddr("1.2.3.4")); ok {
		t.Fatal("empty table matched")
	}
}

func TestParseCIDRTableErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"missing region", "10.0.0.0/8\n", `line 1: want "CIDR REGION [LAT,LON]", got "10.0.0.0/8"`},
		{"bad CIDR", "# c\n10.0.0.0/33 eu\n", `line 2: CIDR "10.0.0.0/33"`},
		{"not a CIDR", "hello eu\n", `line 1: CIDR "hello"`},
		{"bare address", "10.0.0.1 eu\n", `line 1: CIDR "10.0.0.1"`},
		{"host bits", "10.0.0.1/8 eu\n", `line 1: CIDR "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?`},
		{"4in6", "::ffff:10.0.0.0/104 eu\n", "IPv4-mapped IPv6 range; write it as IPv4"},
		{"zone", "fe80::%eth0/64 eu\n", `line 1: CIDR "fe80::%eth0/64"`},
		{"bad region", "10.0.0.0/8 eu/west\n", `line 1: region "eu/west" must be`},
		{"region starts with dash", "10.0.0.0/8 -eu\n", `region "-eu"`},
		{"long region", "10.0.0.0/8 " + strings.Repeat("a", 65) + "\n", "must be 1 to 64"},
		{"bad location", "10.0.0.0/8 eu 95,10\n", `line 1: location "95,10"`},
		{"location without comma", "10.0.0.0/8 eu 52.5 13.4\n", `location "52.5 13.4"`},
		{"null island", "10.0.0.0/8 eu 0,0\n", "reserved"},
		{"duplicate", "10.0.0.0/8 a\n\n10.0.0.0/8 b\n", "line 3: 10.0.0.0/8 already given on line 1"},
		{"long line", "10.0.0.0/8 eu #" + strings.Repeat("x", MaxCIDRLineLen) + "\n", "line 1: longer than 4096 bytes"},
		{"long line later", "10.0.0.0/8 eu\n" + strings.Repeat("x", MaxCIDRLineLen+1), "line 2: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := ParseCIDRTable(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ParseCIDRTable = %v, want error containing %q", tab, tt.want)
			}
			if !errors.Is(err, ErrCIDRTable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want ErrCIDRTable containing %q", err, tt.want)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseCIDRTableReadError(t *testing.T) {
	_, err := ParseCIDRTable(failingReader{})
	if !errors.Is(err, ErrCIDRTable) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzParseCIDRTable checks that no input panics the parser and that every
// range of a table that parses is found by Lookup of its own addresses,
// with a match at least as specific as the range.
func FuzzParseCIDRTable(f *testing.F) {
	f.Add([]byte(sampleTable))
	f.Add([]byte("10.0.0.0/8 eu 52.5,13.4\n10.0.0.0/9 us\n"))
	f.Add([]byte("::/0 any\n2001:db8::/126 x 1,1\n"))
	f.Add([]byte("10.0.0.0/8\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := ParseCIDRTable(bytes.NewReader(data))
		if err != nil {
			if tab != nil || !errors.Is(err, ErrCIDRTable) {
				t.Fatalf("error %v with table %v", err, tab)
			}
			return
		}
		n := 0
		for _, set := range []prefixSet{tab.v4, tab.v6} {
			for p, e := range set.byPrefix {
				n++
				if !regionRE.MatchString(e.region) || (e.hasLoc && !e.loc.Valid()) || e.line < 1 {
					t.Fatalf("bad entry %+v", e)
				}
				last := p.Addr()
				for i := 0; i < 8 && p.Contains(last.Next()); i++ {
					last = last.Next()
				}
				for _, ip := range []netip.Addr{p.Addr(), last} {
					got, ok := tab.lookup(ip)
					if !ok || !got.prefix.Contains(ip) || got.prefix.Bits() < p.Bits() {
						t.Fatalf("Lookup(%s) = %+v, %v; the table has %s", ip, got, ok, p)
					}
				}
			}
		}
		if n != tab.Len() {
			t.Fatalf("Len() = %d, entries %d", tab.Len(), n)
		}
	})
}
