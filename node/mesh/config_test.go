package mesh

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// fieldErrors returns the Field of every FieldError joined in err.
func fieldErrors(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		var fe *FieldError
		if errors.As(e, &fe) {
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, x := range j.Unwrap() {
					walk(x)
				}
				return
			}
			out = append(out, fe.Field)
		}
	}
	walk(err)
	return out
}

func TestConfigValidateAccepts(t *testing.T) {
	cases := map[string]func(*Config){
		"minimal": func(c *Config) {
			*c = Config{NodeID: "n", Role: RoleCentral, SecretKeys: [][]byte{testKey(1)}}
		},
		"dev mode without keys": func(c *Config) { c.SecretKeys = nil; c.DevMode = true },
		"aes-128 and aes-192": func(c *Config) {
			c.SecretKeys = [][]byte{testKey(1)[:16], testKey(2)[:24]}
		},
		"ipv6 and dns addresses": func(c *Config) {
			c.HTTPAddr = "[::1]:80"
			c.QUICAddr = "edge-7.example.net:443"
			c.Seeds = []string{"seed.example.net:7946", "[fe80::1]:7946"}
		},
		"unset location":       func(c *Config) { c.Location = routing.Location{} },
		"multibyte id":         func(c *Config) { c.NodeID = "Zürich-€-节点" },
		"explicit advertising": func(c *Config) { c.BindPort = 7946; c.AdvertiseAddr = "127.0.0.1"; c.AdvertisePort = 17946 },
		"wan profile":          func(c *Config) { c.Profile = ProfileWAN },
		"lan profile":          func(c *Config) { c.Profile = ProfileLAN },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			c := testConfig("ok")
			mod(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestConfigValidateRejects(t *testing.T) {
	cases := []struct {
		name  string
		field string
		mod   func(*Config)
	}{
		{"empty id", "NodeID", func(c *Config) { c.NodeID = "" }},
		{"id one byte too long", "NodeID", func(c *Config) { c.NodeID = strings.Repeat("a", MaxNodeIDLen+1) }},
		{"multibyte id too long", "NodeID", func(c *Config) { c.NodeID = strings.Repeat("€", 22) }}, // 66 bytes
		{"id invalid utf-8", "NodeID", func(c *Config) { c.NodeID = "a\xffb" }},
		{"id with space", "NodeID", func(c *Config) { c.NodeID = "a b" }},
		{"id with control", "NodeID", func(c *Config) { c.NodeID = "a\nb" }},
		{"id with no-break space", "NodeID", func(c *Config) { c.NodeID = "a\u00a0b" }},
		{"no role", "Role", func(c *Config) { c.Role = "" }},
		{"bad role", "Role", func(c *Config) { c.Role = "coordinator" }},
		{"region one byte too long", "Region", func(c *Config) { c.Region = strings.Repeat("r", MaxRegionLen+1) }},
		{"multibyte region too long", "Region", func(c *Config) { c.Region = strings.Repeat("𝄞", 9) }}, // 36 bytes
		{"latitude out of range", "Location", func(c *Config) { c.Location = routing.Location{Lat: 91, Lon: 1} }},
		{"longitude out of range", "Location", func(c *Config) { c.Location = routing.Location{Lat: 1, Lon: -180.5} }},
		{"NaN location", "Location", func(c *Config) { c.Location = routing.Location{Lat: math.NaN(), Lon: 1} }},
		{"http addr one byte too long", "HTTPAddr", func(c *Config) { c.HTTPAddr = strings.Repeat("h", MaxAddrLen-4) + ":8080" }},
		{"http addr without port", "HTTPAddr", func(c *Config) { c.HTTPAddr = "127.0.0.1" }},
		{"http addr port 0", "HTTPAddr", func(c *Config) { c.HTTPAddr = "127.0.0.1:0" }},
		{"http addr port too big", "HTTPAddr", func(c *Config) { c.HTTPAddr = "127.0.0.1:65536" }},
		{"http addr port with sign", "HTTPAddr", func(c *Config) { c.HTTPAddr = "127.0.0.1:+80" }},
		{"http addr empty host", "HTTPAddr", func(c *Config) { c.HTTPAddr = ":80" }},
		{"quic addr one byte too long", "QUICAddr", func(c *Config) { c.QUICAddr = "[::1]:" + strings.Repeat("1", MaxAddrLen-5) }},
		{"quic addr multibyte too long", "QUICAddr", func(c *Config) { c.QUICAddr = strings.Repeat("ü", 31) + ":4430" }},
		{"quic addr bad host", "QUICAddr", func(c *Config) { c.QUICAddr = "a b:443" }},
		{"quic addr multibyte host", "QUICAddr", func(c *Config) { c.QUICAddr = "ünï:443" }},
		{"bind addr not ip", "BindAddr", func(c *Config) { c.BindAddr = "localhost" }},
		{"bind port negative", "BindPort", func(c *Config) { c.BindPort = -1 }},
		{"bind port too big", "BindPort", func(c *Config) { c.BindPort = 65536 }},
		{"advertise addr not ip", "AdvertiseAddr", func(c *Config) { c.AdvertiseAddr = "host" }},
		{"advertise port too big", "AdvertisePort", func(c *Config) { c.BindPort = 1; c.AdvertisePort = 70000 }},
		{"advertise port with dynamic bind", "AdvertisePort", func(c *Config) { c.AdvertisePort = 7946 }},
		{"bad profile", "Profile", func(c *Config) { c.Profile = "datacenter" }},
		{"bad seed", "Seeds[1]", func(c *Config) { c.Seeds = []string{"127.0.0.1:7946", "127.0.0.1"} }},
		{"no key outside dev mode", "SecretKeys", func(c *Config) { c.SecretKeys = nil }},
		{"short key", "SecretKeys[0]", func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 15)} }},
		{"key of 33 bytes", "SecretKeys[1]", func(c *Config) { c.SecretKeys = [][]byte{testKey(1), make([]byte, 33)} }},
		{"duplicate key", "SecretKeys[1]", func(c *Config) { c.SecretKeys = [][]byte{testKey(1), testKey(1)} }},
		{"negative update interval", "UpdateInterval", func(c *Config) { c.UpdateInterval = -time.Second }},
		{"negative event buffer", "EventBuffer", func(c *Config) { c.EventBuffer = -1 }},
		{"negative reap timeout", "ReapTimeout", func(c *Config) { c.ReapTimeout = -1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("n")
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			fields := fieldErrors(err)
			if len(fields) != 1 || fields[0] != tc.field {
				t.Fatalf("Validate flagged %v, want [%s]: %v", fields, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name the field", err)
			}
			if _, err := New(c, nil); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := Config{NodeID: "", Role: "x", Profile: "y", BindPort: -1}
	got := fieldErrors(c.Validate())
	want := []string{"NodeID", "Role", "BindPort", "Profile", "SecretKeys"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("fields %v, want %v", got, want)
	}
}

func TestConfigWithDefaultsCopies(t *testing.T) {
	key := testKey(1)
	c := Config{NodeID: "n", Role: RoleEdge, SecretKeys: [][]byte{key}, Seeds: []string{"127.0.0.1:1"}}
	d := c.withDefaults()
	key[0]++
	c.Seeds[0] = "changed"
	if d.SecretKeys[0][0] == key[0] || d.Seeds[0] != "127.0.0.1:1" {
		t.Error("withDefaults aliases the caller's slices")
	}
	if d.BindAddr != DefaultBindAddr || d.Profile != ProfileLAN || d.UpdateInterval != DefaultUpdateInterval ||
		d.EventBuffer != DefaultEventBuffer || d.ReapTimeout != DefaultReapTimeout || d.Logger == nil {
		t.Errorf("defaults not applied: %+v", d)
	}
}

func TestProfilesMapToMemberlistDefaults(t *testing.T) {
	cases := map[Profile]*memberlist.Config{
		ProfileLAN:   memberlist.DefaultLANConfig(),
		ProfileWAN:   memberlist.DefaultWANConfig(),
		ProfileLocal: memberlist.DefaultLocalConfig(),
	}
	for p, want := range cases {
		got := baseMemberlistConfig(p)
		if got.ProbeInterval != want.ProbeInterval || got.ProbeTimeout != want.ProbeTimeout ||
			got.GossipInterval != want.GossipInterval || got.PushPullInterval != want.PushPullInterval ||
			got.SuspicionMult != want.SuspicionMult {
			t.Errorf("%s: timings differ from memberlist's defaults", p)
		}
	}
}

func TestNewRejectsInvalidCatalog(t *testing.T) {
	c := testConfig("n")
	src := SourceFuncs{CatalogFunc: func() Catalog {
		return Catalog{Models: []CatalogEntry{{Name: "m", Version: "1", Digest: "md5:abc"}}}
	}}
	if _, err := New(c, src); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("New = %v, want a digest error", err)
	}
}

func TestNewDevModeHasNoKeyring(t *testing.T) {
	c := testConfig("dev")
	c.SecretKeys, c.DevMode = nil, true
	c.Logger = discardLogger()
	m, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	if err := m.InstallKey(testKey(9)); !errors.Is(err, ErrEncryptionDisabled) {
		t.Errorf("InstallKey = %v", err)
	}
	if err := m.UseKey(testKey(9)); !errors.Is(err, ErrEncryptionDisabled) {
		t.Errorf("UseKey = %v", err)
	}
	if err := m.RemoveKey(testKey(9)); !errors.Is(err, ErrEncryptionDisabled) {
		t.Errorf("RemoveKey = %v", err)
	}
	if _, _, err := m.ListKeys(); !errors.Is(err, ErrEncryptionDisabled) {
		t.Errorf("ListKeys = %v", err)
	}
	if l := m.Local(); l.Catalog == nil || len(l.Catalog.Models) != 0 || l.CatalogDigest != Digest(Catalog{}) {
		t.Errorf("nil StateSource: Local() = %+v", l)
	}
}

func TestJoinValidatesSeeds(t *testing.T) {
	n := newNode(t, "seeds")
	if _, err := n.Join(nil); err == nil {
		t.Error("Join with no seeds succeeded")
	}
	if _, err := n.Join([]string{"not an address"}); err == nil {
		t.Error("Join with a bad seed succeeded")
	}
}

func TestJoinConfiguredSeeds(t *testing.T) {
	a := newNode(t, "cfgseed-0")
	b := newNode(t, "cfgseed-1", func(c *Config) { c.Seeds = []string{a.Addr()} })
	if n, err := b.Join(nil); err != nil || n != 1 {
		t.Fatalf("Join(nil) = %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "membership", func() string { return checkAllAlive([]*node{a, b}) })
}
