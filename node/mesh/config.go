package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"

	"github.com/petrel-mesh/petrel/routing"
)

// Role is the tier a node serves in. It travels in node metadata so that
// routing can tell edge nodes from the central fallback tier.
type Role string

// The roles a node may advertise.
const (
	// RoleEdge is a node at an edge site (a store, a city).
	RoleEdge Role = "edge"
	// RoleCentral is a node of the Kubernetes-hosted central tier.
	RoleCentral Role = "central"
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r == RoleEdge || r == RoleCentral }

// Profile names one of memberlist's tuned timing profiles.
type Profile string

// The supported gossip profiles.
const (
	// ProfileLAN maps to memberlist.DefaultLANConfig: 1 s probes, 500 ms
	// probe timeout, 200 ms gossip. The default.
	ProfileLAN Profile = "lan"
	// ProfileWAN maps to memberlist.DefaultWANConfig: 5 s probes, 3 s probe
	// timeout, 500 ms gossip, for pools that span regions.
	ProfileWAN Profile = "wan"
	// ProfileLocal maps to memberlist.DefaultLocalConfig: tuned for a single
	// machine (loopback), as used by `petrel dev` and by tests.
	ProfileLocal Profile = "local"
)

// Defaults applied by New to zero-valued Config fields.
const (
	// DefaultBindAddr is the gossip bind address when Config.BindAddr is
	// empty. Loopback is the safe default; production sets an explicit
	// address.
	DefaultBindAddr = "127.0.0.1"
	// DefaultUpdateInterval is the minimum spacing of metadata
	// re-advertisements triggered by NotifyChanged.
	DefaultUpdateInterval = 200 * time.Millisecond
	// DefaultEventBuffer is the per-subscriber event channel capacity.
	DefaultEventBuffer = 128
	// DefaultReapTimeout is how long a dead or left peer stays in the peer
	// table (with its state) before it is forgotten.
	DefaultReapTimeout = 10 * time.Minute
)

// Config configures a Mesh. The zero value is not usable: NodeID, Role and
// either SecretKeys or DevMode must be set. Validate reports every problem
// at once.
type Config struct {
	// NodeID names this node in the mesh and is its memberlist node name.
	// 1 to MaxNodeIDLen bytes of UTF-8 without spaces or control
	// characters; unique within the mesh.
	NodeID string
	// Role is RoleEdge or RoleCentral.
	Role Role
	// Region is an optional region label (0 to MaxRegionLen bytes of UTF-8
	// without spaces or control characters).
	Region string
	// Location is the node's geographic position, used by
	// routing.EstimateRTT until network coordinates have converged. The
	// zero Location means unknown.
	Location routing.Location

	// HTTPAddr and QUICAddr are the host:port addresses of this node's
	// inference API over TCP (HTTP/1.1, HTTP/2) and QUIC (HTTP/3), as peers
	// should dial them. Each is optional (empty: not served) and at most
	// MaxAddrLen bytes.
	HTTPAddr string
	QUICAddr string

	// BindAddr is the IP address the gossip UDP and TCP listeners bind to;
	// DefaultBindAddr when empty. BindPort is their port; 0 picks a free
	// port (tests), production uses a fixed port such as 7946.
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are the gossip address and port that
	// peers are told to use, for NAT. Empty and 0 mean "the bound ones".
	// AdvertisePort needs a non-zero BindPort.
	AdvertiseAddr string
	AdvertisePort int

	// Profile selects memberlist's timing defaults; ProfileLAN when empty.
	Profile Profile
	// Seeds are host:port gossip addresses that Join uses when it is
	// called with no addresses.
	Seeds []string

	// SecretKeys is the gossip keyring (AES-GCM). SecretKeys[0] is the
	// primary key, used to encrypt; all keys are tried to decrypt. Each key
	// is 16, 24 or 32 bytes (AES-128/192/256), without duplicates.
	SecretKeys [][]byte
	// DevMode allows gossip without encryption when SecretKeys is empty.
	// Outside DevMode a missing key is a configuration error.
	DevMode bool

	// Logger receives the mesh's own logs and memberlist's logs (at debug
	// level, with memberlist's own level as an attribute).
	// slog.Default() when nil.
	Logger *slog.Logger

	// UpdateInterval is the minimum time between two metadata
	// re-advertisements caused by NotifyChanged; DefaultUpdateInterval when
	// zero.
	UpdateInterval time.Duration
	// EventBuffer is the capacity of each Subscribe channel;
	// DefaultEventBuffer when zero.
	EventBuffer int
	// ReapTimeout is how long dead and left peers are kept in the peer
	// table; DefaultReapTimeout when zero.
	ReapTimeout time.Duration

	// Tune, if set, may adjust the memberlist configuration derived from
	// Profile: timing knobs such as ProbeInterval, GossipInterval or
	// PushPullInterval (tests shorten them). It runs before the mesh
	// installs its identity, addresses, keyring, logger and delegates, so
	// it cannot override those.
	Tune func(*memberlist.Config)
}

// FieldError is one invalid Config field. Validate and New return the
// errors.Join of all FieldErrors found, so callers can inspect each with
// errors.As.
type FieldError struct {
	Field  string // the Config field, e.g. "NodeID" or "SecretKeys[1]"
	Reason string
}

// Error returns "mesh: config: <Field>: <Reason>".
func (e *FieldError) Error() string { return "mesh: config: " + e.Field + ": " + e.Reason }

// Validate reports every problem with c, or nil. It does not modify c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	check := func(field string, err error) {
		if err != nil {
			errs = append(errs, &FieldError{Field: field, Reason: err.Error()})
		}
	}

	check("NodeID", checkText(c.NodeID, MaxNodeIDLen, true))
	if !c.Role.Valid() {
		bad("Role", "%q is not %q or %q", c.Role, RoleEdge, RoleCentral)
	}
	check("Region", checkText(c.Region, MaxRegionLen, false))
	check("Location", checkLocation(c.Location))
	check("HTTPAddr", checkHostPort(c.HTTPAddr, false))
	check("QUICAddr", checkHostPort(c.QUICAddr, false))

	if c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil {
		bad("BindAddr", "%q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("BindPort", "%d is out of range 0-65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		bad("AdvertiseAddr", "%q is not an IP address", c.AdvertiseAddr)
	}
	switch {
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		bad("AdvertisePort", "%d is out of range 0-65535", c.AdvertisePort)
	case c.AdvertisePort != 0 && c.BindPort == 0:
		bad("AdvertisePort", "needs an explicit BindPort (memberlist advertises the dynamic port)")
	}

	switch c.Profile {
	case "", ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		bad("Profile", "%q is not %q, %q or %q", c.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	for i, s := range c.Seeds {
		check(fmt.Sprintf("Seeds[%d]", i), checkHostPort(s, true))
	}

	if len(c.SecretKeys) == 0 && !c.DevMode {
		bad("SecretKeys", "a gossip encryption key is required (set DevMode to gossip in plain text)")
	}
	for i, k := range c.SecretKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			bad(fmt.Sprintf("SecretKeys[%d]", i), "%d bytes: must be 16, 24 or 32", len(k))
			continue
		}
		for j := range i {
			if bytes.Equal(c.SecretKeys[j], k) {
				bad(fmt.Sprintf("SecretKeys[%d]", i), "duplicates SecretKeys[%d]", j)
				break
			}
		}
	}

	if c.UpdateInterval < 0 {
		bad("UpdateInterval", "%v is negative", c.UpdateInterval)
	}
	if c.EventBuffer < 0 {
		bad("EventBuffer", "%d is negative", c.EventBuffer)
	}
	if c.ReapTimeout < 0 {
		bad("ReapTimeout", "%v is negative", c.ReapTimeout)
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with zero fields set to their defaults
// and slices copied, so that later changes by the caller have no effect.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.UpdateInterval == 0 {
		c.UpdateInterval = DefaultUpdateInterval
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = DefaultEventBuffer
	}
	if c.ReapTimeout == 0 {
		c.ReapTimeout = DefaultReapTimeout
	}
	c.Seeds = append([]string(nil), c.Seeds...)
	keys := make([][]byte, len(c.SecretKeys))
	for i, k := range c.SecretKeys {
		keys[i] = bytes.Clone(k)
	}
	c.SecretKeys = keys
	return c
}

// baseMemberlistConfig returns memberlist's defaults for p.
func baseMemberlistConfig(p Profile) *memberlist.Config {
	switch p {
	case ProfileWAN:
		return memberlist.DefaultWANConfig()
	case ProfileLocal:
		return memberlist.DefaultLocalConfig()
	default:
		return memberlist.DefaultLANConfig()
	}
}

// checkText validates a metadata text field: at most max bytes of valid
// UTF-8 with no control or white-space characters; empty only when
// !required. Node IDs, regions and model names share this rule so that
// they print safely in logs and never need quoting.
func checkText(s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return errors.New("is required")
	case len(s) > max:
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), max)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("contains %U (control or space characters are not allowed)", r)
		}
	}
	return nil
}

// checkHostPort validates an advertised host:port: at most MaxAddrLen
// bytes, a host that is an IP literal or a DNS-style name, and a decimal
// port in 1-65535. Empty is allowed only when !required.
func checkHostPort(s string, required bool) error {
	if s == "" {
		if required {
			return errors.New("is required")
		}
		return nil
	}
	if len(s) > MaxAddrLen {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), MaxAddrLen)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || port[0] == '0' {
		return fmt.Errorf("%q: port must be a decimal number in 1-65535", s)
	}
	if host == "" {
		return fmt.Errorf("%q: host is empty", s)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	for i := 0; i < len(host); i++ {
		b := host[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_') {
			return fmt.Errorf("%q: host is neither an IP address nor a DNS name", s)
		}
	}
	return nil
}
