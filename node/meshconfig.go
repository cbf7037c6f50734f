package node

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"time"
)

// MeshConfig joins a node to a Petrel mesh: gossip membership, forwarding
// to peers, the central fallback tier and peer-to-peer model transfer.
// The zero value (Enabled false) is a standalone node.
type MeshConfig struct {
	Enabled bool
	// Role is "edge" (default) or "central": central nodes are the
	// fallback tier and are chosen after edge peers.
	Role string
	// Region and location (decimal degrees) are advertised to peers; the
	// location estimates round-trip times before network coordinates
	// have converged. HasLocation false means unknown.
	Region      string
	Lat, Lon    float64
	HasLocation bool
	// GossipBind is host:port for memberlist (UDP and TCP); port 0 picks
	// one. GossipAdvertise, if set, is what peers are told instead.
	GossipBind      string
	GossipAdvertise string
	// AdvertiseHTTP is the host:port peers reach this node's inference API
	// at (TCP and UDP), when not the listen address (NAT, relays).
	AdvertiseHTTP string
	// Profile is "lan" (default), "wan" or "local" (memberlist's presets).
	Profile string
	// Seeds are gossip addresses (host:port) of nodes to join through.
	Seeds []string
	// GossipKeys is the AES-GCM keyring (16, 24 or 32 bytes each; the
	// first is the primary). Required unless DevMode.
	GossipKeys [][]byte
	// DevMode allows gossip without encryption (local development only).
	DevMode bool
	// Mutual TLS between nodes: the node's certificate and key and the
	// mesh CA. With TLSDir instead, the node issues itself a certificate
	// from the development CA in that directory (ca.pem, ca-key.pem; see
	// `petrel cert`), for local meshes.
	CertFile, KeyFile, CAFile string
	TLSDir                    string
	// Policy picks among peers: "nearest" (default), "p2c" or
	// "rendezvous" (see package routing).
	Policy string
	// MaxHops bounds forwarding: a request that already took MaxHops hops
	// is not forwarded again. Default 2.
	MaxHops int
	// Fallback are central-tier base URLs (https://, mutual TLS; HTTP/1.1,
	// HTTP/2 or HTTP/3 by FallbackProtocol) used when no peer can serve.
	Fallback         []string
	FallbackProtocol string
	// ForwardMethod is how requests travel to peers: "stream" (default)
	// sends headers and body in one write with the mesh-only method
	// PETREL-FORWARD; "post" sends the inference API's POST through
	// quic-go's RoundTrip, for meshes with nodes that predate "stream"
	// (a peer that answers 405 to PETREL-FORWARD gets POSTs anyway).
	ForwardMethod string
	// ForwardTimeout bounds a forwarded request that carries no deadline.
	// Default 30 s.
	ForwardTimeout time.Duration
	// BlobDir is the local blob store of model artifacts (peers fetch
	// from it; acquired models land in it); BlobBytes bounds it (default
	// 4 GiB). Default dir: <os temp dir>/petrel-<id>-blobs.
	BlobDir   string
	BlobBytes int64
	// LazyLoad acquires a model that peers serve and this node lacks on
	// its first request (the request itself is forwarded meanwhile).
	LazyLoad bool
	// MaxLoadedBytes bounds the model bytes loaded in memory; acquired
	// models are evicted least recently used first beyond it (repository
	// models are pinned). 0 means no bound.
	MaxLoadedBytes int64
	// Preload names models to acquire from peers at start (popular
	// models), when the repository does not have them. Needs LazyLoad.
	Preload []string
	// Origin is the base URL that has every artifact at
	// /v1/blobs/{digest} when no peer does (a central node).
	Origin string
	// Tune adjusts the gossip layer's timing (tests).
	Tune func(*GossipTiming)
}

// GossipTiming are the memberlist intervals a test may shorten.
type GossipTiming struct {
	ProbeInterval, ProbeTimeout, GossipInterval, PushPullInterval time.Duration
	SuspicionMult                                                 int
}

// maxHopsLimit caps MaxHops: a mesh path longer than this is a loop.
const maxHopsLimit = 8

func (m *MeshConfig) withDefaults() MeshConfig {
	c := *m
	if c.Role == "" {
		c.Role = "edge"
	}
	if c.Profile == "" {
		c.Profile = "lan"
	}
	if c.Policy == "" {
		c.Policy = "nearest"
	}
	if c.MaxHops == 0 {
		c.MaxHops = 2
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = 30 * time.Second
	}
	if c.FallbackProtocol == "" {
		c.FallbackProtocol = "h3"
	}
	if c.ForwardMethod == "" {
		c.ForwardMethod = "stream"
	}
	if c.BlobBytes == 0 {
		c.BlobBytes = 4 << 30
	}
	return c
}

// Validate reports what is wrong with an enabled mesh config.
func (m *MeshConfig) Validate() error {
	if !m.Enabled {
		return nil
	}
	c := m.withDefaults()
	if c.Role != "edge" && c.Role != "central" {
		return fmt.Errorf("mesh role %q: want edge or central", c.Role)
	}
	switch c.Profile {
	case "lan", "wan", "local":
	default:
		return fmt.Errorf("gossip profile %q: want lan, wan or local", c.Profile)
	}
	if c.HasLocation && (math.IsNaN(c.Lat) || math.IsNaN(c.Lon) || c.Lat < -90 || c.Lat > 90 || c.Lon < -180 || c.Lon > 180) {
		return fmt.Errorf("location %v,%v: want latitude in [-90, 90] and longitude in [-180, 180]", c.Lat, c.Lon)
	}
	if c.GossipBind == "" {
		return errors.New("gossip bind address is not set")
	}
	if _, _, err := net.SplitHostPort(c.GossipBind); err != nil {
		return fmt.Errorf("gossip bind address %q: %v", c.GossipBind, err)
	}
	if c.GossipAdvertise != "" {
		if _, _, err := net.SplitHostPort(c.GossipAdvertise); err != nil {
			return fmt.Errorf("gossip advertise address %q: %v", c.GossipAdvertise, err)
		}
	}
	if c.AdvertiseHTTP != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHTTP); err != nil {
			return fmt.Errorf("advertised HTTP address %q: %v", c.AdvertiseHTTP, err)
		}
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("seed %q: want host:port: %v", s, err)
		}
	}
	if len(c.GossipKeys) == 0 && !c.DevMode {
		return errors.New("gossip encryption key is required outside development mode (--gossip-key-file, or --dev)")
	}
	for i, k := range c.GossipKeys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("gossip key %d: %d bytes, want 16, 24 or 32 (AES-128/192/256)", i+1, n)
		}
	}
	files := c.CertFile != "" || c.KeyFile != "" || c.CAFile != ""
	if files && (c.CertFile == "" || c.KeyFile == "" || c.CAFile == "") {
		return errors.New("mesh TLS: give the certificate, key and CA files together")
	}
	if files && c.TLSDir != "" {
		return errors.New("mesh TLS: give either certificate files or a development CA directory, not both")
	}
	if !files && c.TLSDir == "" {
		return errors.New("mesh TLS: nodes talk to each other over mutual TLS; give --mesh-cert/--mesh-key/--mesh-ca, or --mesh-tls-dir with a development CA (petrel cert ca)")
	}
	switch c.Policy {
	case "nearest", "p2c", "rendezvous":
	default:
		return fmt.Errorf("routing policy %q: want nearest, p2c or rendezvous", c.Policy)
	}
	if c.MaxHops < 1 || c.MaxHops > maxHopsLimit {
		return fmt.Errorf("max hops %d: want 1..%d", c.MaxHops, maxHopsLimit)
	}
	switch c.FallbackProtocol {
	case "h1", "h2", "h3":
	default:
		return fmt.Errorf("fallback protocol %q: want h1, h2 or h3", c.FallbackProtocol)
	}
	if c.ForwardMethod != "stream" && c.ForwardMethod != "post" {
		return fmt.Errorf("forward method %q: want stream or post", c.ForwardMethod)
	}
	for _, f := range c.Fallback {
		// The central tier is a mesh peer: forwarded requests carry mesh
		// headers, which a node accepts only over mutual TLS.
		if !baseURL(f, "https") {
			return fmt.Errorf("fallback URL %q: want https://host:port (forwarded requests go over mutual TLS)", f)
		}
	}
	if c.Origin != "" && !baseURL(c.Origin, "http", "https") {
		return fmt.Errorf("origin URL %q: want http://host:port or https://host:port", c.Origin)
	}
	if c.BlobBytes < 0 || c.MaxLoadedBytes < 0 {
		return errors.New("blob store bytes and max loaded bytes must not be negative")
	}
	if c.ForwardTimeout < 0 {
		return fmt.Errorf("forward timeout %v: must not be negative", c.ForwardTimeout)
	}
	return nil
}

// baseURL reports whether s is an absolute URL with a host and one of the
// schemes.
func baseURL(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Host != "" && slices.Contains(schemes, u.Scheme)
}
