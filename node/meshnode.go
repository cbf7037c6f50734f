package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/petrel-mesh/petrel/node/blobstore"
	"github.com/petrel-mesh/petrel/node/mesh"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/petrel-mesh/petrel/routing"
)

// The node's side of the mesh: mutual TLS for its listeners and its
// forwards, gossip membership advertising its catalog and load, and the
// peer list the forwarder picks from. See docs/mesh.md.

// devCertValidity is how long a certificate issued from a development CA
// directory lasts.
const devCertValidity = 30 * 24 * time.Hour

// meshTLS loads (or, with a development CA directory, issues) the node's
// mesh certificate and returns the listener and client configurations.
func (n *Node) meshTLS(host string) (server, client *tls.Config, err error) {
	mc := n.cfg.Mesh
	certFile, keyFile, caFile := mc.CertFile, mc.KeyFile, mc.CAFile
	if mc.TLSDir != "" {
		ca, err := meshtls.LoadCA(mc.TLSDir)
		if err != nil {
			return nil, nil, fmt.Errorf("mesh TLS: %w", err)
		}
		hosts := []string{host, "localhost", "127.0.0.1", "::1"}
		if ah, _, err := net.SplitHostPort(mc.AdvertiseHTTP); err == nil && ah != "" {
			hosts = append(hosts, ah) // peers dial the advertised address
		}
		certFile, keyFile, err = ca.IssueNode(n.cfg.ID, hosts, filepath.Join(mc.TLSDir, "nodes"), devCertValidity)
		if err != nil {
			return nil, nil, fmt.Errorf("mesh TLS: issue a certificate for %s: %w", n.cfg.ID, err)
		}
		caFile = filepath.Join(mc.TLSDir, "ca.pem")
	}
	server, err = meshtls.ServerConfig(certFile, keyFile, caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh TLS: %w", err)
	}
	client, err = meshtls.ClientConfig(certFile, keyFile, caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh TLS: %w", err)
	}
	return server, client, nil
}

// startMesh joins the gossip mesh and sets up forwarding; the listeners
// are bound and the initial models loaded by then.
func (n *Node) startMesh(clientTLS *tls.Config) error {
	mc := n.cfg.Mesh.withDefaults()
	bindHost, bindPort, err := splitHostPort(mc.GossipBind)
	if err != nil {
		return fmt.Errorf("gossip bind: %w", err)
	}
	cfg := mesh.Config{
		NodeID:     n.cfg.ID,
		Role:       mesh.Role(mc.Role),
		Region:     mc.Region,
		HTTPAddr:   cmp.Or(mc.AdvertiseHTTP, n.Addr()),
		QUICAddr:   cmp.Or(mc.AdvertiseHTTP, n.Addr()),
		BindAddr:   bindHost,
		BindPort:   bindPort,
		Profile:    mesh.Profile(mc.Profile),
		Seeds:      mc.Seeds,
		SecretKeys: mc.GossipKeys,
		DevMode:    mc.DevMode,
		Logger:     n.log,
	}
	if mc.HasLocation {
		cfg.Location = routing.Location{Lat: mc.Lat, Lon: mc.Lon}
	}
	if mc.GossipAdvertise != "" {
		cfg.AdvertiseAddr, cfg.AdvertisePort, err = splitHostPort(mc.GossipAdvertise)
		if err != nil {
			return fmt.Errorf("gossip advertise: %w", err)
		}
	}
	if mc.Tune != nil {
		cfg.Tune = func(c *memberlist.Config) {
			t := GossipTiming{ProbeInterval: c.ProbeInterval, ProbeTimeout: c.ProbeTimeout, GossipInterval: c.GossipInterval, PushPullInterval: c.PushPullInterval, SuspicionMult: c.SuspicionMult}
			mc.Tune(&t)
			c.ProbeInterval, c.ProbeTimeout, c.GossipInterval, c.PushPullInterval, c.SuspicionMult = t.ProbeInterval, t.ProbeTimeout, t.GossipInterval, t.PushPullInterval, t.SuspicionMult
		}
	}
	m, err := mesh.New(cfg, meshState{n})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	n.mesh = m
	joined := len(mc.Seeds) == 0
	if !joined {
		if _, err := m.Join(mc.Seeds); err != nil {
			// The seeds may not be up yet (nodes start in any order): keep
			// trying in the background and serve our own models meanwhile.
			n.log.Warn("gossip join failed; retrying in the background", "seeds", mc.Seeds, "err", err)
		} else {
			joined = true
		}
	}
	idx := newPeerIndex(m)
	f, err := newForwarder(n, mc, idx, clientTLS)
	if err != nil {
		m.Shutdown()
		return err
	}
	n.fwd = f
	n.peerIdx = idx
	if mc.LazyLoad {
		n.acq = newAcquirer(n, idx, n.blobs)
	}
	n.meshStop = make(chan struct{})
	n.meshWG.Go(n.advertiseLoad)
	n.meshWG.Go(func() { idx.watch(n.meshStop) })
	if !joined {
		n.meshWG.Go(func() { n.retryJoin(mc.Seeds) })
	}
	if len(mc.Preload) > 0 && n.acq != nil {
		n.meshWG.Go(func() { n.preloadFromMesh(mc.Preload) })
	}
	n.log.Info("joined the mesh", "role", mc.Role, "region", mc.Region, "gossip", m.Addr(), "peers", len(m.Peers()))
	return nil
}

// retryJoin joins the seeds until one answers (or a peer joined us), with
// backoff from 500 ms to 10 s.
func (n *Node) retryJoin(seeds []string) {
	wait := 500 * time.Millisecond
	for {
		select {
		case <-n.meshStop:
			return
		case <-time.After(wait):
		}
		if len(n.mesh.Peers()) > 0 {
			return
		}
		if _, err := n.mesh.Join(seeds); err == nil {
			n.log.Info("joined the mesh through the seeds", "seeds", seeds)
			return
		} else {
			n.log.Debug("gossip join retry failed", "seeds", seeds, "err", err)
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// preloadWindow is how long a node keeps looking for its preload models
// in its peers' catalogs after it starts.
const preloadWindow = 2 * time.Minute

// preloadFromMesh warms the models named in MeshConfig.Preload that the
// repository does not have, acquiring each from a peer as soon as one
// advertises it.
func (n *Node) preloadFromMesh(names []string) {
	pending := map[string]bool{}
	for _, name := range names {
		pending[name] = true
	}
	deadline := time.Now().Add(preloadWindow)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for name := range pending {
			if _, err := n.models.lookup(name, ""); err == nil {
				delete(pending, name)
			} else if n.acq.start(name, "") != nil {
				n.log.Info("preloading a model from the mesh", "model", name)
				delete(pending, name)
			}
		}
		select {
		case <-n.meshStop:
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	for name := range pending {
		n.log.Warn("preload: no peer advertised the model", "model", name, "waited", preloadWindow)
	}
}

// SetGossipKeys makes keys the gossip keyring: each is installed, the
// first becomes the primary (used to encrypt), and any other key is
// removed. Rotation without losing members: add the new key as a second
// key on every node, then make it the first on every node, then drop the
// old one (docs/mesh.md); `petrel node` does this on SIGHUP from its key
// file.
func (n *Node) SetGossipKeys(keys [][]byte) error {
	if n.mesh == nil {
		return errors.New("gossip keys: this node is not in a mesh")
	}
	if len(keys) == 0 {
		return errors.New("gossip keys: at least one key is needed")
	}
	for i, k := range keys {
		if err := n.mesh.InstallKey(k); err != nil {
			return fmt.Errorf("gossip keys: install key %d: %w", i+1, err)
		}
	}
	if err := n.mesh.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip keys: use the first key: %w", err)
	}
	have, _, err := n.mesh.ListKeys()
	if err != nil {
		return fmt.Errorf("gossip keys: %w", err)
	}
	for _, k := range have {
		if !slices.ContainsFunc(keys, func(w []byte) bool { return bytes.Equal(w, k) }) {
			if err := n.mesh.RemoveKey(k); err != nil {
				return fmt.Errorf("gossip keys: remove an old key: %w", err)
			}
		}
	}
	n.log.Info("gossip keyring updated", "keys", len(keys))
	return nil
}

// advertiseLoad refreshes the node's gossip metadata while it runs: load
// changes all the time, and the mesh package rate-limits the updates.
func (n *Node) advertiseLoad() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.meshStop:
			return
		case <-t.C:
			n.mesh.NotifyChanged()
		}
	}
}

// leaveMesh announces the node's departure (peers stop routing to it)
// before it drains; stopMesh releases the rest. Both are idempotent.
func (n *Node) leaveMesh(timeout time.Duration) {
	if n.mesh == nil {
		return
	}
	n.meshOnce.Do(func() { close(n.meshStop) })
	n.meshWG.Wait()
	if err := n.mesh.Leave(timeout); err != nil {
		n.log.Warn("gossip leave", "err", err)
	}
}

func (n *Node) stopMesh() {
	if n.mesh == nil {
		return
	}
	n.meshOnce.Do(func() { close(n.meshStop) })
	n.meshWG.Wait()
	n.mesh.Shutdown()
	if n.acq != nil {
		n.acq.close()
	}
	if n.fwd != nil {
		n.fwd.close()
	}
}

// openBlobs opens the node's blob store (mesh nodes only), before the
// repository's models load so that they go into it.
func (n *Node) openBlobs() error {
	mc := n.cfg.Mesh.withDefaults()
	dir := mc.BlobDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "petrel-"+n.cfg.ID+"-blobs")
	}
	s, err := blobstore.Open(dir, mc.BlobBytes)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	n.blobs = s
	return nil
}

// meshChanged tells peers that the catalog changed.
func (n *Node) meshChanged() {
	if n.mesh != nil {
		n.mesh.NotifyChanged()
	}
}

// Mesh is the node's gossip membership, nil for a standalone node.
func (n *Node) Mesh() *mesh.Mesh { return n.mesh }

// GossipAddr is the node's gossip address (host:port), "" for a
// standalone node.
func (n *Node) GossipAddr() string {
	if n.mesh == nil {
		return ""
	}
	return n.mesh.Addr()
}

func (n *Node) maxHops() int {
	if n.fwd != nil {
		return n.fwd.cfg.MaxHops
	}
	return n.cfg.Mesh.withDefaults().MaxHops
}

// handlePeers answers GET /v1/mesh/peers: the peers this node sees, with
// their state, estimated round-trip time and its source, load and
// catalog size.
func (n *Node) handlePeers(w http.ResponseWriter, r *http.Request) {
	if n.mesh == nil {
		writeError(w, http.StatusNotFound, "this node is not in a mesh")
		return
	}
	type peerInfo struct {
		ID        string  `json:"id"`
		Role      string  `json:"role"`
		Region    string  `json:"region,omitempty"`
		State     string  `json:"state"`
		Addr      string  `json:"gossip_addr"`
		QUICAddr  string  `json:"quic_addr"`
		RTTMs     float64 `json:"rtt_ms"`
		RTTSource string  `json:"rtt_source"`
		PingMs    float64 `json:"last_ping_ms"`
		InFlight  uint32  `json:"in_flight"`
		Queue     uint32  `json:"queue_depth"`
		Models    int     `json:"models"`
		Ejected   bool    `json:"ejected"`
	}
	var out []peerInfo
	for _, p := range n.mesh.Peers() {
		pi := peerInfo{
			ID: p.ID, Role: string(p.Role), Region: p.Region, State: p.State.String(), Addr: p.Addr, QUICAddr: p.QUICAddr,
			RTTMs: float64(p.RTT) / 1e6, RTTSource: p.RTTSource.String(), PingMs: float64(p.LastPingRTT) / 1e6,
			InFlight: p.Load.InFlight, Queue: p.Load.QueueDepth,
		}
		if p.Catalog != nil {
			pi.Models = len(p.Catalog.Models)
		}
		if n.fwd != nil {
			pi.Ejected = n.fwd.outliers.Ejected(p.ID)
		}
		out = append(out, pi)
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": n.cfg.ID, "gossip_addr": n.mesh.Addr(), "peers": out})
}

// meshState gives the gossip layer the node's catalog and load.
type meshState struct{ n *Node }

func (s meshState) Catalog() mesh.Catalog {
	m := s.n.models
	m.mu.RLock()
	defer m.mu.RUnlock()
	var c mesh.Catalog
	for _, e := range m.models {
		if e.state != StateReady {
			continue
		}
		for _, v := range e.versions {
			c.Models = append(c.Models, mesh.CatalogEntry{
				Name: v.manifest.Name, Version: v.manifest.Version, Digest: v.manifest.Digest,
				Ready: true, Bytes: v.bytes,
			})
		}
	}
	c.Generation = m.generation.Load()
	return c
}

func (s meshState) Load() mesh.Load {
	m := s.n.models
	queued := 0
	m.mu.RLock()
	for _, e := range m.models {
		for _, v := range e.versions {
			queued += v.sched.QueueLen()
		}
	}
	m.mu.RUnlock()
	return mesh.Load{InFlight: uint32(max(s.n.inflight.Load(), 0)), QueueDepth: uint32(queued)}
}

// peerIndex finds the peers that serve a model without scanning every
// peer's catalog on each forwarded request: a map from model name to the
// peers whose catalog lists it, rebuilt after mesh events (joins, leaves,
// metadata and catalog updates) and at least every indexMaxAge, in case
// an event was dropped. A request then looks only at those peers, with
// their current state, load and RTT.
type peerIndex struct {
	m      *mesh.Mesh
	dirty  atomic.Bool
	mu     sync.Mutex
	built  time.Time
	models map[string][]string // model name -> peer ids; read-only once built
}

// indexMaxAge bounds how stale the peer index may get without an event.
const indexMaxAge = time.Second

func newPeerIndex(m *mesh.Mesh) *peerIndex {
	p := &peerIndex{m: m}
	p.dirty.Store(true)
	return p
}

// watch marks the index dirty on every mesh event until stop closes.
func (p *peerIndex) watch(stop <-chan struct{}) {
	events, cancel := p.m.Subscribe()
	defer cancel()
	for {
		select {
		case <-stop:
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			p.dirty.Store(true)
		}
	}
}

// holders returns the ids of the peers whose catalog lists model.
func (p *peerIndex) holders(model string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dirty.Swap(false) || time.Since(p.built) > indexMaxAge {
		models := map[string][]string{}
		for _, peer := range p.m.Peers() {
			if peer.Catalog == nil {
				continue
			}
			seen := map[string]bool{}
			for _, e := range peer.Catalog.Models {
				if !seen[e.Name] {
					seen[e.Name] = true
					models[e.Name] = append(models[e.Name], peer.ID)
				}
			}
		}
		p.models, p.built = models, time.Now()
	}
	return p.models[model]
}

// targets lists the peers that have model (version "" = any) ready now.
func (p *peerIndex) targets(model, version string) []peerTarget {
	var ts []peerTarget
	for _, id := range p.holders(model) {
		peer, ok := p.m.Peer(id)
		// A suspect peer missed a probe, which on a loaded machine is not
		// proof of anything (memberlist's own reason to suspect before it
		// declares): it stays a candidate, and the outlier detector and
		// hedging deal with a peer that really fails requests.
		if !ok || peer.Catalog == nil || (peer.State != mesh.StateAlive && peer.State != mesh.StateSuspect) {
			continue
		}
		ready := false
		for _, e := range peer.Catalog.Models {
			if e.Name == model && (version == "" || e.Version == version) && e.Ready {
				ready = true
				break
			}
		}
		if !ready {
			continue
		}
		ts = append(ts, peerTarget{
			ID: peer.ID, Role: string(peer.Role), QUICAddr: peer.QUICAddr,
			RTT: peer.RTT, RTTSource: peer.RTTSource,
			InFlight: int(peer.Load.InFlight), Queue: int(peer.Load.QueueDepth), Ready: true,
		})
	}
	return ts
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0..65535", p)
	}
	return h, port, nil
}

// Kill stops the node abruptly, as a crash would: no gossip leave, no
// drain, open connections cut, queued requests failed. For tests and
// failure drills; Shutdown afterwards does nothing.
func (n *Node) Kill() {
	n.shutdownOnce.Do(func() {
		n.draining.Store(true)
		if n.mesh != nil {
			n.meshOnce.Do(func() { close(n.meshStop) })
			n.meshWG.Wait()
			n.mesh.Shutdown()
		}
		if n.httpSrv != nil {
			n.httpSrv.Close()
		}
		if n.h3Srv != nil {
			n.h3Srv.Close()
		}
		n.closeListeners()
		n.serveWG.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n.models.closeAll(ctx)
		if n.fwd != nil {
			n.fwd.close()
		}
		n.log.Warn("node killed")
	})
}
