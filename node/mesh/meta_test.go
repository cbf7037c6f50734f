package mesh

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

func sampleMeta() *nodeMeta {
	return &nodeMeta{
		ID: "edge-berlin-1", Role: RoleEdge, Region: "eu-central",
		Location: routing.Location{Lat: 52.52, Lon: 13.405},
		HTTPAddr: "10.0.0.7:8080", QUICAddr: "[2001:db8::7]:8443",
		Load:       Load{InFlight: 12, QueueDepth: 3},
		CatalogDig: 0xdeadbeefcafef00d, CatalogGen: 42,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	cases := map[string]func(*nodeMeta){
		"full":             func(*nodeMeta) {},
		"central":          func(m *nodeMeta) { m.Role = RoleCentral },
		"leaving":          func(m *nodeMeta) { m.Leaving = true },
		"unknown location": func(m *nodeMeta) { m.Location = routing.Location{} },
		"southwest":        func(m *nodeMeta) { m.Location = routing.Location{Lat: -33.8688, Lon: -151.2093} },
		"extremes":         func(m *nodeMeta) { m.Location = routing.Location{Lat: -90, Lon: 180} },
		"no addresses":     func(m *nodeMeta) { m.HTTPAddr, m.QUICAddr, m.Region = "", "", "" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			in := sampleMeta()
			mod(in)
			b, err := encodeMeta(in, memberlist.MetaMaxSize)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != metaVersion {
				t.Fatalf("first byte %d, want the version", b[0])
			}
			out, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if *out != *in {
				t.Fatalf("round trip:\n got %+v\nwant %+v", *out, *in)
			}
		})
	}
}

func TestMetaLocationFixedPoint(t *testing.T) {
	in := sampleMeta()
	in.Location = routing.Location{Lat: 48.858370123456, Lon: 2.294481987654}
	b, _ := encodeMeta(in, memberlist.MetaMaxSize)
	out, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(out.Location.Lat-in.Location.Lat) > 0.5e-7 || math.Abs(out.Location.Lon-in.Location.Lon) > 0.5e-7 {
		t.Errorf("location %v decoded as %v", in.Location, out.Location)
	}
	// A position that rounds onto 0°N 0°E is advertised as unknown, not as
	// a flagged zero that every peer would reject.
	in.Location = routing.Location{Lat: 1e-9, Lon: 0}
	b, err = encodeMeta(in, memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := decodeMeta(b); err != nil || out.Location != (routing.Location{}) {
		t.Errorf("near-null location: %v, %v", out, err)
	}
}

// worstCaseConfig sets every variable-length field to its maximum length,
// using multibyte UTF-8 where the field allows it.
func worstCaseConfig() Config {
	c := testConfig(strings.Repeat("€", MaxNodeIDLen/3) + "x") // 21*3+1 = 64 bytes
	c.Role = RoleCentral
	c.Region = strings.Repeat("𝄞", MaxRegionLen/4) // 8*4 = 32 bytes
	host := strings.Repeat("h", MaxAddrLen-len(":65535"))
	c.HTTPAddr = host + ":65535"
	c.QUICAddr = host + ":65534"
	c.Location = routing.Location{Lat: -89.9999999, Lon: -179.9999999}
	return c
}

func TestMetaWorstCaseFits(t *testing.T) {
	c := worstCaseConfig()
	if len(c.NodeID) != MaxNodeIDLen || len(c.Region) != MaxRegionLen || len(c.HTTPAddr) != MaxAddrLen || len(c.QUICAddr) != MaxAddrLen {
		t.Fatalf("worst case is not at the limits: %d %d %d %d", len(c.NodeID), len(c.Region), len(c.HTTPAddr), len(c.QUICAddr))
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("worst case rejected: %v", err)
	}
	m := &nodeMeta{
		ID: c.NodeID, Role: c.Role, Region: c.Region, Location: c.Location,
		HTTPAddr: c.HTTPAddr, QUICAddr: c.QUICAddr, Leaving: true,
		Load:       Load{InFlight: math.MaxUint32, QueueDepth: math.MaxUint32},
		CatalogDig: math.MaxUint64, CatalogGen: math.MaxUint64,
	}
	b, err := encodeMeta(m, memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != metaMaxLen {
		t.Errorf("worst case encodes to %d bytes, metaMaxLen says %d", len(b), metaMaxLen)
	}
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("worst case encodes to %d bytes, over memberlist.MetaMaxSize %d", len(b), memberlist.MetaMaxSize)
	}
	if out, err := decodeMeta(b); err != nil || *out != *m {
		t.Fatalf("worst case round trip: %v", err)
	}

	// And through a real node's delegate.
	c.Logger = discardLogger()
	mesh, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mesh.Shutdown()
	if n := len((&delegate{m: mesh}).NodeMeta(memberlist.MetaMaxSize)); n == 0 || n > memberlist.MetaMaxSize {
		t.Fatalf("NodeMeta returned %d bytes", n)
	}
	// A limit below the encoding yields nothing rather than a panic.
	if b := (&delegate{m: mesh}).NodeMeta(10); b != nil {
		t.Errorf("NodeMeta(10) = %d bytes", len(b))
	}
}

func TestEncodeMetaRejectsInvalid(t *testing.T) {
	for name, mod := range map[string]func(*nodeMeta){
		"long id":     func(m *nodeMeta) { m.ID = strings.Repeat("i", MaxNodeIDLen+1) },
		"empty id":    func(m *nodeMeta) { m.ID = "" },
		"bad role":    func(m *nodeMeta) { m.Role = "x" },
		"long region": func(m *nodeMeta) { m.Region = strings.Repeat("r", MaxRegionLen+1) },
		"long addr":   func(m *nodeMeta) { m.HTTPAddr = strings.Repeat("a", MaxAddrLen) + ":1" },
		"bad lat":     func(m *nodeMeta) { m.Location.Lat = 100 },
	} {
		m := sampleMeta()
		mod(m)
		if _, err := encodeMeta(m, memberlist.MetaMaxSize); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	if _, err := encodeMeta(sampleMeta(), 20); err == nil {
		t.Error("encoded past the limit")
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	good, err := encodeMeta(sampleMeta(), memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets in good: version 0, role 1, flags 2, id length 3, id 4...
	idLen := int(good[3])
	fixedAt := len(good) - 32 // lat, lon, load, digest, generation
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"empty":             {[]byte{}, "empty"},
		"version 0":         {with(func(b []byte) []byte { b[0] = 0; return b }), "unsupported version 0"},
		"version 2":         {with(func(b []byte) []byte { b[0] = 2; return b }), "unsupported version 2"},
		"role 0":            {with(func(b []byte) []byte { b[1] = 0; return b }), "unknown role"},
		"role 3":            {with(func(b []byte) []byte { b[1] = 3; return b }), "unknown role"},
		"unknown flag":      {with(func(b []byte) []byte { b[2] |= 0x80; return b }), "unknown flags"},
		"trailing byte":     {append(bytes.Clone(good), 0), "trailing"},
		"invalid utf-8 id":  {with(func(b []byte) []byte { b[4] = 0xff; return b }), "UTF-8"},
		"space in id":       {with(func(b []byte) []byte { b[4] = ' '; return b }), "space"},
		"empty id":          {append([]byte{1, 1, good[2], 0}, good[4+idLen:]...), "id: is required"},
		"id length too big": {with(func(b []byte) []byte { b[3] = 250; return b }), "truncated"},
		"location flag on null island": {with(func(b []byte) []byte {
			copy(b[fixedAt:], make([]byte, 8))
			return b
		}), "unknown location"},
		"coordinates without flag": {with(func(b []byte) []byte { b[2] &^= metaFlagLocation; return b }), "without the location flag"},
		"latitude 91": {with(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[fixedAt:], 91*geoScale)
			return b
		}), "latitude"},
	}
	for name, tc := range cases {
		m, err := decodeMeta(tc.b)
		if err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
		}
	}
	for n := range len(good) {
		if _, err := decodeMeta(good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: decoded", n)
		}
	}
	if _, err := decodeMeta(good); err != nil {
		t.Fatalf("the unmodified encoding fails: %v", err)
	}
}
