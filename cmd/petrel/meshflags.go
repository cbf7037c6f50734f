package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/node"
)

// meshFlags are `petrel node`'s mesh options.
type meshFlags struct {
	gossipBind, gossipAdvertise, profile, join, keyFile    string
	role, region, location                                 string
	cert, key, ca, tlsDir, policy, fallback, fallbackProto string
	forwardMethod                                          string
	maxHops                                                int
	dev, lazy                                              bool
	blobDir, origin                                        string
	blobBytes, maxLoaded                                   int64
	advertiseHTTP                                          string
	preload                                                string
	probeInterval                                          time.Duration
}

func addMeshFlags(fs *flag.FlagSet) *meshFlags {
	m := &meshFlags{}
	fs.StringVar(&m.gossipBind, "gossip-bind", "", "join a mesh: gossip (memberlist) address host:port, UDP and TCP; port 0 picks one")
	fs.StringVar(&m.gossipAdvertise, "gossip-advertise", "", "gossip address told to peers, if not the bind address")
	fs.StringVar(&m.profile, "gossip-profile", "lan", "gossip timing: lan|wan|local")
	fs.StringVar(&m.advertiseHTTP, "advertise-addr", "", "host:port peers use for this node's inference API (TCP and UDP), if not --listen")
	fs.DurationVar(&m.probeInterval, "gossip-probe-interval", 0, "override the profile's failure-detector probe interval (tests, small meshes)")
	fs.StringVar(&m.join, "join", "", "comma-separated gossip addresses of nodes to join through")
	fs.StringVar(&m.keyFile, "gossip-key-file", "", "gossip keyring: one base64 AES key (16, 24 or 32 bytes) per line, the first is used to encrypt")
	fs.BoolVar(&m.dev, "dev", false, "development mode: gossip without encryption is allowed")
	fs.StringVar(&m.role, "role", "edge", "mesh role: edge|central")
	fs.StringVar(&m.region, "region", "", "region advertised to peers")
	fs.StringVar(&m.location, "location", "", "latitude,longitude in decimal degrees, advertised to peers")
	fs.StringVar(&m.cert, "mesh-cert", "", "mutual TLS between nodes: this node's certificate (PEM)")
	fs.StringVar(&m.key, "mesh-key", "", "mutual TLS: this node's key (PEM)")
	fs.StringVar(&m.ca, "mesh-ca", "", "mutual TLS: the mesh CA certificate (PEM)")
	fs.StringVar(&m.tlsDir, "mesh-tls-dir", "", "mutual TLS from a development CA directory (petrel cert ca): the node issues itself a certificate")
	fs.StringVar(&m.policy, "routing-policy", "nearest", "how to pick a peer: nearest|p2c|rendezvous")
	fs.IntVar(&m.maxHops, "max-hops", 2, "forwarding hops a request may take")
	fs.StringVar(&m.fallback, "fallback", "", "comma-separated central-tier base URLs, used when no peer can serve")
	fs.StringVar(&m.fallbackProto, "fallback-protocol", "h3", "protocol for the fallback URLs: h1|h2|h3")
	fs.StringVar(&m.forwardMethod, "forward-method", "stream", "how requests go to peers over HTTP/3: stream (headers and body in one write, PETREL-FORWARD) | post (for meshes with older nodes)")
	fs.BoolVar(&m.lazy, "lazy-load", true, "acquire a model that peers serve on its first request here (forwarding it meanwhile)")
	fs.StringVar(&m.blobDir, "blob-dir", "", "local store of model artifacts (default: a directory under the OS temp dir)")
	fs.Int64Var(&m.blobBytes, "blob-bytes", 4<<30, "bound on the local artifact store")
	fs.Int64Var(&m.maxLoaded, "max-loaded-bytes", 0, "bound on model bytes loaded in memory; acquired models are evicted LRU beyond it (0: none)")
	fs.StringVar(&m.preload, "preload-from-mesh", "", "comma-separated models to acquire from peers at start (popular models)")
	fs.StringVar(&m.origin, "origin", "", "base URL with every artifact at /v1/blobs/{digest}, used when no peer has one (e.g. a central node)")
	return m
}

// apply fills mc; mesh mode is on when a gossip address is given.
func (m *meshFlags) apply(mc *node.MeshConfig) error {
	// Role, region and location describe the node to the coordinator too,
	// with or without a mesh.
	mc.Role, mc.Region = m.role, m.region
	if m.location != "" {
		lat, lon, ok := strings.Cut(m.location, ",")
		la, err1 := strconv.ParseFloat(strings.TrimSpace(lat), 64)
		lo, err2 := strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if !ok || err1 != nil || err2 != nil || la < -90 || la > 90 || lo < -180 || lo > 180 {
			return fmt.Errorf("--location %q: want latitude,longitude such as 48.85,2.35", m.location)
		}
		mc.Lat, mc.Lon, mc.HasLocation = la, lo, true
	}
	if m.gossipBind == "" {
		if m.join != "" || m.keyFile != "" || m.fallback != "" {
			return fmt.Errorf("--join, --gossip-key-file and --fallback need --gossip-bind")
		}
		return nil
	}
	if m.maxHops < 1 {
		return fmt.Errorf("--max-hops %d: want at least 1 (max hops)", m.maxHops)
	}
	mc.Enabled = true
	mc.GossipBind, mc.GossipAdvertise, mc.Profile = m.gossipBind, m.gossipAdvertise, m.profile
	mc.DevMode, mc.Role, mc.Region = m.dev, m.role, m.region
	mc.CertFile, mc.KeyFile, mc.CAFile, mc.TLSDir = m.cert, m.key, m.ca, m.tlsDir
	mc.Policy, mc.MaxHops, mc.FallbackProtocol, mc.ForwardMethod = m.policy, m.maxHops, m.fallbackProto, m.forwardMethod
	mc.Seeds = splitList(m.join)
	mc.AdvertiseHTTP = m.advertiseHTTP
	mc.Preload = splitList(m.preload)
	if m.probeInterval < 0 {
		return fmt.Errorf("--gossip-probe-interval %v: must not be negative", m.probeInterval)
	}
	if pi := m.probeInterval; pi > 0 {
		mc.Tune = func(g *node.GossipTiming) {
			g.ProbeInterval = pi
			g.ProbeTimeout = min(g.ProbeTimeout, pi/2)
		}
	}
	mc.LazyLoad, mc.BlobDir, mc.BlobBytes, mc.MaxLoadedBytes, mc.Origin = m.lazy, m.blobDir, m.blobBytes, m.maxLoaded, m.origin
	mc.Fallback = splitList(m.fallback)
	if m.keyFile != "" {
		keys, err := readKeyring(m.keyFile)
		if err != nil {
			return err
		}
		mc.GossipKeys = keys
	}
	return mc.Validate()
}

// readKeyring reads base64 keys, one per line (blank lines and # comments
// skipped).
func readKeyring(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %w", err)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key-file %s line %d: not base64: %v", path, line, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--gossip-key-file %s line %d: %d-byte key, want 16, 24 or 32", path, line, n)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--gossip-key-file %s: no keys", path)
	}
	return keys, nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
