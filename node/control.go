package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/blobstore"
	"github.com/petrel-mesh/petrel/routing"
)

// ControlConfig connects a node to the coordinator (docs/coordinator.md):
// the node watches the desired state in NATS KV and reconciles it (fetch,
// verify, load, warm up, serve with the given traffic split), and reports
// its status and per-version figures every StatusInterval. The zero value
// (no NATS URL) is a node without a coordinator.
type ControlConfig struct {
	// NATS is the coordinator's NATS (URL and credentials).
	NATS bus.ConnOptions
	// Prefix names the buckets and subjects (default "petrel").
	Prefix string
	// CoordinatorKey verifies manifest signatures. Required with NATS.
	CoordinatorKey ed25519.PublicKey
	// Labels select which models this node serves (placement).
	Labels map[string]string
	// PublicURL is the base URL clients reach this node at, as the
	// coordinator's route API hands it out. Default: derived from the
	// listen (or advertised) address.
	PublicURL string
	// StatusInterval is how often status and figures are published.
	// Default 1 s.
	StatusInterval time.Duration
	// RequestKeyHeader names the header whose value pins a client to a
	// version during a rollout. Default Petrel-Request-Key.
	RequestKeyHeader string
	// MaxArtifactBytes bounds a model fetched from the object store.
	// Default 1 GiB.
	MaxArtifactBytes int64
}

// Enabled reports whether the node has a coordinator.
func (c *ControlConfig) Enabled() bool { return c.NATS.URL != "" }

func (c *ControlConfig) validate() error {
	if !c.Enabled() {
		return nil
	}
	if len(c.CoordinatorKey) != ed25519.PublicKeySize {
		return errors.New("control: the coordinator's public key is required to verify manifests (--coordinator-key)")
	}
	if c.StatusInterval < 0 {
		return fmt.Errorf("control: status interval %v is negative", c.StatusInterval)
	}
	for k := range c.Labels {
		if k == "" || strings.ContainsAny(k, " =,") {
			return fmt.Errorf("control: label key %q", k)
		}
	}
	return nil
}

func (n *Node) requestKeyHeader() string {
	if h := n.cfg.Control.RequestKeyHeader; h != "" {
		return h
	}
	return DefaultRequestKeyHeader
}

// control is the node's side of the coordinator protocol.
type control struct {
	n       *Node
	cfg     ControlConfig
	names   bus.Names
	nc      *nats.Conn
	started time.Time

	mu      sync.Mutex
	b       *bus.Buckets
	desired map[string]*bus.Desired
	states  map[vkey]bus.ModelStatus // desired versions not (yet) serving
	failed  map[string]time.Time     // digest -> last failure, for backoff
	synced  map[string]bool          // models this loop manages
	// steps are the versions installed as steps of a synced pipeline;
	// each is retired once no loaded pipeline runs it and its own
	// model's desired state does not want it.
	steps map[vkey]bool

	flSub *nats.Subscription // federated round starts

	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type vkey struct{ model, version string }

// failureBackoff is how long a version that failed to install waits
// before the next try.
const failureBackoff = 15 * time.Second

func (n *Node) startControl() error {
	cfg := n.cfg.Control
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.MaxArtifactBytes == 0 {
		cfg.MaxArtifactBytes = 1 << 30
	}
	co := cfg.NATS
	co.RetryOnFailedConnect = true // start serving even while NATS is down
	if co.Name == "" {
		co.Name = "petrel-node-" + n.cfg.ID
	}
	if co.Logger == nil {
		co.Logger = n.log.With("component", "nats")
	}
	nc, err := bus.Connect(co)
	if err != nil {
		return fmt.Errorf("control: connect to NATS at %s: %w", co.URL, err)
	}
	c := &control{
		n: n, cfg: cfg, names: bus.Names{Prefix: cfg.Prefix}, nc: nc, started: time.Now().UTC(),
		desired: map[string]*bus.Desired{}, states: map[vkey]bus.ModelStatus{}, failed: map[string]time.Time{},
		synced: map[string]bool{}, steps: map[vkey]bool{}, kick: make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	n.ctl = c
	c.wg.Go(c.watch)
	c.wg.Go(c.reconcileLoop)
	c.wg.Go(c.reportLoop)
	c.startFL()
	return nil
}

func (c *control) stop() {
	if c.flSub != nil {
		c.flSub.Unsubscribe()
	}
	c.cancel()
	c.wg.Wait()
	c.nc.Close()
}

func (c *control) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// watch binds the buckets (waiting for the coordinator to create them)
// and follows the desired state; the watcher is re-created by bus.WatchKV
// after reconnects.
func (c *control) watch() {
	var b *bus.Buckets
	for b == nil {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		var err error
		b, err = bus.Open(ctx, c.nc, c.names)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.n.log.Info("waiting for the coordinator's NATS buckets", "err", err)
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	c.mu.Lock()
	c.b = b
	c.mu.Unlock()
	err := bus.WatchKV(c.ctx, bus.WatchConfig[bus.Desired]{
		Conn: c.nc, KV: b.Desired,
		OnUpdate: func(key string, d *bus.Desired, _ uint64) {
			if d.Model != key {
				c.n.log.Warn("ignoring desired state stored under another model's key", "key", key, "model", d.Model)
				return
			}
			c.mu.Lock()
			c.desired[key] = d
			c.mu.Unlock()
			c.poke()
		},
		OnDelete: func(key string) {
			c.mu.Lock()
			delete(c.desired, key)
			c.mu.Unlock()
			c.poke()
		},
		Logger: c.n.log,
	})
	if err != nil && c.ctx.Err() == nil {
		c.n.log.Error("desired state watch stopped", "err", err)
	}
}

func (c *control) reconcileLoop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
		c.reconcile(c.ctx)
	}
}

// matches reports whether the placement selects this node.
func (c *control) matches(p bus.Placement) bool {
	if len(p.Regions) > 0 && !slices.Contains(p.Regions, c.n.cfg.Mesh.Region) {
		return false
	}
	for k, v := range p.Labels {
		if c.cfg.Labels[k] != v {
			return false
		}
	}
	return true
}

// reconcile brings the loaded models in line with the desired state.
func (c *control) reconcile(ctx context.Context) {
	c.mu.Lock()
	desired := make(map[string]*bus.Desired, len(c.desired))
	for k, d := range c.desired {
		desired[k] = d
	}
	b := c.b
	c.mu.Unlock()
	if b == nil {
		return
	}
	wantedAll := map[vkey]bool{}
	for name, d := range desired {
		if !c.matches(d.Placement) {
			continue
		}
		wanted := map[string]bool{}
		for _, dv := range d.Versions {
			if dv.Weight <= 0 && dv.Shadow <= 0 {
				continue
			}
			wanted[dv.Version] = true
			wantedAll[vkey{name, dv.Version}] = true
			c.ensure(ctx, b, name, dv)
		}
		c.setTraffic(name, d)
		c.mu.Lock()
		c.synced[name] = true
		c.mu.Unlock()
		c.retire(ctx, name, wanted)
	}
	c.mu.Lock()
	var gone []string
	for name := range c.synced {
		if d, ok := desired[name]; !ok || !c.matches(d.Placement) {
			gone = append(gone, name)
			delete(c.synced, name)
		}
	}
	for k := range c.states {
		if d, ok := desired[k.model]; !ok || !c.matches(d.Placement) {
			delete(c.states, k)
		}
	}
	c.mu.Unlock()
	for _, name := range gone {
		c.n.models.setTraffic(name, nil)
		c.retire(ctx, name, nil)
	}
	c.retireSteps(ctx, wantedAll)
}

// retireSteps unloads the pipeline step versions that no loaded pipeline
// runs any more and that their own model's desired state does not want.
func (c *control) retireSteps(ctx context.Context, wanted map[vkey]bool) {
	pinned := c.n.models.pinnedSteps()
	c.mu.Lock()
	var drop []vkey
	for k := range c.steps {
		if !pinned[k] && !wanted[k] {
			drop = append(drop, k)
			delete(c.steps, k)
		}
	}
	c.mu.Unlock()
	for _, k := range drop {
		if !slices.Contains(c.n.models.syncedVersions(k.model), k.version) {
			continue
		}
		if err := c.n.models.removeVersion(ctx, k.model, k.version); err != nil {
			c.n.log.Warn("unload a retired pipeline step", "model", k.model, "version", k.version, "err", err)
			continue
		}
		c.n.log.Info("pipeline step version retired", "model", k.model, "version", k.version)
	}
}

func (c *control) setTraffic(name string, d *bus.Desired) {
	var vers []string
	var ws []float64
	t := &traffic{weights: map[string]float64{}}
	for _, dv := range d.Versions {
		if dv.Weight > 0 {
			vers = append(vers, dv.Version)
			ws = append(ws, dv.Weight)
			t.weights[dv.Version] = dv.Weight
		}
		if dv.Shadow > 0 {
			t.shadows = append(t.shadows, shadowTarget{version: dv.Version, share: dv.Shadow})
		}
	}
	if len(vers) > 0 {
		s, err := routing.NewSplit(vers, ws)
		if err != nil {
			c.n.log.Warn("desired traffic split rejected", "model", name, "err", err)
			return
		}
		t.split = s
	}
	c.n.models.setTraffic(name, t)
}

// retire unloads the synced versions of name that are not wanted, except
// those a loaded pipeline runs as a step (retireSteps takes them later).
func (c *control) retire(ctx context.Context, name string, wanted map[string]bool) {
	pinned := c.n.models.pinnedSteps()
	for _, ver := range c.n.models.syncedVersions(name) {
		if wanted[ver] {
			continue
		}
		if pinned[vkey{name, ver}] {
			c.mu.Lock()
			c.steps[vkey{name, ver}] = true
			c.mu.Unlock()
			continue
		}
		if err := c.n.models.removeVersion(ctx, name, ver); err != nil {
			c.n.log.Warn("unload a retired version", "model", name, "version", ver, "err", err)
			continue
		}
		c.n.log.Info("model version retired", "model", name, "version", ver)
	}
}

func (c *control) setState(name, ver, state, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := vkey{name, ver}
	if state == "" {
		delete(c.states, k)
		return
	}
	c.states[k] = bus.ModelStatus{Model: name, Version: ver, State: state, Reason: reason}
}

// ensure makes one desired version serve here: fetch, verify, load, warm
// up. Failures are recorded (and reported) and retried after a backoff.
func (c *control) ensure(ctx context.Context, b *bus.Buckets, name string, dv bus.DesiredVersion) {
	if v, err := c.n.models.lookup(name, dv.Version); err == nil && v.manifest.ServingDigest() == dv.Digest {
		c.setState(name, dv.Version, "", "")
		return
	}
	c.mu.Lock()
	last, failed := c.failed[dv.Digest]
	c.mu.Unlock()
	if failed && time.Since(last) < failureBackoff {
		return
	}
	c.setState(name, dv.Version, StateLoading, "")
	start := time.Now()
	src, err := c.install(ctx, b, name, dv)
	if err != nil {
		c.mu.Lock()
		c.failed[dv.Digest] = time.Now()
		c.mu.Unlock()
		c.setState(name, dv.Version, "FAILED", err.Error())
		c.n.metrics.syncs.WithLabelValues("failed").Inc()
		c.n.log.Warn("desired model version failed", "model", name, "version", dv.Version, "err", err)
		c.publishStatus() // tell the coordinator now, not at the next tick
		return
	}
	c.mu.Lock()
	delete(c.failed, dv.Digest)
	c.mu.Unlock()
	c.setState(name, dv.Version, "", "")
	c.n.metrics.syncs.WithLabelValues(src).Inc()
	c.n.log.Info("model version synced", "model", name, "version", dv.Version, "from", src, "took", time.Since(start))
	c.publishStatus()
}

func (c *control) install(ctx context.Context, b *bus.Buckets, name string, dv bus.DesiredVersion) (string, error) {
	var sm bus.SignedManifest
	if _, err := bus.GetJSON(ctx, b.Registry, name+"."+dv.Version, &sm); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	man, err := models.VerifyManifest(c.cfg.CoordinatorKey, sm.Manifest, sm.Signature)
	if err != nil {
		return "", fmt.Errorf("manifest of %s %s: %w", name, dv.Version, err)
	}
	if man.Name != name || man.Version != dv.Version || man.ServingDigest() != dv.Digest {
		return "", fmt.Errorf("manifest says %s %s %s, desired state says %s %s %s", man.Name, man.Version, man.ServingDigest(), name, dv.Version, dv.Digest)
	}
	if man.Format == models.FormatPipeline {
		return c.installPipeline(ctx, b, man)
	}
	return c.installManifest(ctx, b, man)
}

// installManifest fetches, verifies and loads the artifact (and
// transforms) of a verified ONNX manifest.
func (c *control) installManifest(ctx context.Context, b *bus.Buckets, man *models.Manifest) (string, error) {
	name := man.Name
	art, src, err := c.fetch(ctx, b, name, man)
	if err != nil {
		return "", err
	}
	if err := models.VerifyArtifact(man, art); err != nil {
		return "", err
	}
	ts, err := c.fetchTransforms(ctx, b, name, man)
	if err != nil {
		return "", err
	}
	if err := c.n.models.installSynced(ctx, man, art, ts); err != nil {
		return "", err
	}
	return src, nil
}

// installPipeline installs a verified pipeline manifest: first each
// step's pinned version (from the registry, like any synced version, its
// manifest's digest checked against the one the pipeline pins), then the
// pipeline over them. Step versions get no traffic split of their own;
// they are retired when no loaded pipeline runs them and their model's
// desired state does not want them (retireSteps). A step that is itself
// a pipeline is refused.
func (c *control) installPipeline(ctx context.Context, b *bus.Buckets, man *models.Manifest) (string, error) {
	src := "disk"
	for i, st := range man.Pipeline.Steps {
		k := vkey{st.Model, st.Version}
		c.mu.Lock()
		c.steps[k] = true
		c.mu.Unlock()
		if v, err := c.n.models.lookup(st.Model, st.Version); err == nil && v.manifest.ServingDigest() == st.Digest {
			continue
		}
		var sm bus.SignedManifest
		if _, err := bus.GetJSON(ctx, b.Registry, st.Model+"."+st.Version, &sm); err != nil {
			return "", fmt.Errorf("pipeline step %d: manifest of %s %s: %w", i+1, st.Model, st.Version, err)
		}
		sman, err := models.VerifyManifest(c.cfg.CoordinatorKey, sm.Manifest, sm.Signature)
		if err != nil {
			return "", fmt.Errorf("pipeline step %d: manifest of %s %s: %w", i+1, st.Model, st.Version, err)
		}
		if sman.Name != st.Model || sman.Version != st.Version || sman.ServingDigest() != st.Digest {
			return "", fmt.Errorf("pipeline step %d: registry has %s %s %s, the pipeline pins %s %s %s", i+1, sman.Name, sman.Version, sman.ServingDigest(), st.Model, st.Version, st.Digest)
		}
		if sman.Format != models.FormatONNX {
			return "", fmt.Errorf("pipeline step %d: %s %s has format %q; steps must be %q models", i+1, st.Model, st.Version, sman.Format, models.FormatONNX)
		}
		s, err := c.installManifest(ctx, b, sman)
		if err != nil {
			return "", fmt.Errorf("pipeline step %d (%s %s): %w", i+1, st.Model, st.Version, err)
		}
		src = s
	}
	if err := c.n.models.installSyncedPipeline(ctx, man); err != nil {
		return "", err
	}
	return src, nil
}

// fetchTransforms fetches the manifest's transform modules like the
// model file, verifies each against its signed digest and size, and
// compiles them (nil when the manifest has none).
func (c *control) fetchTransforms(ctx context.Context, b *bus.Buckets, name string, man *models.Manifest) (*transformSet, error) {
	spec := man.Transforms
	if spec == nil {
		return nil, nil
	}
	var bodies [2][]byte
	for i, t := range []*models.Transform{spec.Pre, spec.Post} {
		if t == nil {
			continue
		}
		stage := []string{stagePre, stagePost}[i]
		mod, _, err := c.fetchDigest(ctx, b, name, t.Digest, models.MaxTransformBytes)
		if err != nil {
			return nil, fmt.Errorf("%s transform: %w", stage, err)
		}
		bodies[i] = mod
	}
	// compileTransforms checks each module's digest and size before
	// compiling it.
	return c.n.compileTransforms(ctx, spec, bodies[0], bodies[1])
}

// fetch gets an artifact: the local blob store, then the peers that hold
// it (nearest first), then the object store.
func (c *control) fetch(ctx context.Context, b *bus.Buckets, name string, man *models.Manifest) ([]byte, string, error) {
	return c.fetchDigest(ctx, b, name, man.Digest, c.cfg.MaxArtifactBytes)
}

// fetchDigest gets one blob of a model's version (its model file or a
// transform module) by digest, at most limit bytes from the object
// store. The caller verifies the bytes against the digest.
func (c *control) fetchDigest(ctx context.Context, b *bus.Buckets, name, digest string, limit int64) ([]byte, string, error) {
	n := c.n
	if n.blobs != nil {
		if n.blobs.Has(digest) {
			if art, err := n.blobs.ReadAll(digest); err == nil {
				return art, "disk", nil
			}
		}
		if n.fwd != nil {
			var sources []blobstore.Source
			for _, h := range n.holdersOf(name, digest) {
				sources = append(sources, blobstore.Source{Name: h.ID, URL: "https://" + h.QUICAddr, Client: n.fwd.client})
			}
			if len(sources) > 0 {
				fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				_, err := n.blobs.Fetch(fctx, digest, -1, sources)
				cancel()
				if err == nil {
					if art, err := n.blobs.ReadAll(digest); err == nil {
						return art, "peer", nil
					}
				} else {
					n.log.Info("peers could not provide the artifact; using the object store", "digest", digest, "err", err)
				}
			}
		}
	}
	art, err := b.GetArtifact(ctx, digest, limit)
	if err != nil {
		return nil, "", fmt.Errorf("artifact %s: %w", digest, err)
	}
	src := "object_store"
	if n.blobs != nil && !n.blobs.Has(digest) {
		// Peers may fetch it from here from now on.
		if err := n.blobs.Put(ctx, digest, bytes.NewReader(art), int64(len(art))); err != nil {
			n.log.Warn("blob store: keep a synced artifact", "digest", digest, "err", err)
		} else if err := n.blobs.Pin(digest); err != nil {
			n.log.Warn("blob store: pin", "digest", digest, "err", err)
		}
	}
	return art, src, nil
}

func (c *control) reportLoop() {
	t := time.NewTicker(c.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.publishStatus()
			c.publishStats()
		}
	}
}

func (c *control) publicURL() string {
	if c.cfg.PublicURL != "" {
		return c.cfg.PublicURL
	}
	addr := c.n.Addr()
	if a := c.n.cfg.Mesh.AdvertiseHTTP; a != "" {
		addr = a
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "https"
	if c.n.cfg.PlainTCP {
		scheme = "http"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (c *control) status() bus.NodeStatus {
	n := c.n
	role := n.cfg.Mesh.Role
	if role == "" {
		role = "edge"
	}
	st := bus.NodeStatus{
		Node: n.cfg.ID, Role: role, Region: n.cfg.Mesh.Region, Lat: n.cfg.Mesh.Lat, Lon: n.cfg.Mesh.Lon, HasLoc: n.cfg.Mesh.HasLocation,
		Labels: c.cfg.Labels, HTTPURL: c.publicURL(), Load: int(n.inflight.Load()), Sent: time.Now().UTC(), Draining: n.draining.Load(),
	}
	seen := map[vkey]bool{}
	for _, v := range n.models.loadedVersions() {
		ms := bus.ModelStatus{Model: v.manifest.Name, Version: v.manifest.Version, State: StateReady}
		if psi, ok := n.Drift(v.manifest.Name); ok {
			ms.PSI = psi
		}
		st.Models = append(st.Models, ms)
		seen[vkey{v.manifest.Name, v.manifest.Version}] = true
	}
	c.mu.Lock()
	for k, s := range c.states {
		if !seen[k] {
			st.Models = append(st.Models, s)
		}
	}
	c.mu.Unlock()
	sort.Slice(st.Models, func(i, j int) bool {
		a, b := st.Models[i], st.Models[j]
		return a.Model < b.Model || a.Model == b.Model && a.Version < b.Version
	})
	return st
}

func (c *control) publishStatus() {
	if !c.nc.IsConnected() {
		return
	}
	if b, err := json.Marshal(c.status()); err == nil {
		c.nc.Publish(c.names.StatusSubject(c.n.cfg.ID), b)
	}
}

func (c *control) publishStats() {
	if !c.nc.IsConnected() {
		return
	}
	st := bus.NodeStats{Node: c.n.cfg.ID, Started: c.started, Sent: time.Now().UTC()}
	for _, v := range c.n.models.loadedVersions() {
		vs := bus.VersionStats{Model: v.manifest.Name, Version: v.manifest.Version, Requests: v.requests.Load(), Errors: v.serverErrors.Load(), Latency: v.hist.snapshot()}
		if v.requests.Load() < vs.Errors { // read in the other order: keep errors <= requests
			vs.Requests = vs.Errors
		}
		if a := v.shadow.Load(); a != nil {
			a.mu.Lock()
			s := a.s
			a.mu.Unlock()
			vs.Shadow = &s
		}
		st.Versions = append(st.Versions, vs)
	}
	if b, err := json.Marshal(st); err == nil {
		c.nc.Publish(c.names.StatsSubject(c.n.cfg.ID), b)
	}
}
