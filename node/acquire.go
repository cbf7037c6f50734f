package node

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/petrel-mesh/petrel/node/blobstore"
	"github.com/petrel-mesh/petrel/node/mesh"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/petrel-mesh/petrel/node/modelcache"
)

// The model cache levels of a mesh node (docs/mesh.md):
//
//  1. memory: loaded sessions. Repository models are pinned; models
//     acquired from peers are evicted least recently used first when the
//     loaded bytes exceed MeshConfig.MaxLoadedBytes.
//  2. local disk: the blob store, content-addressed by sha256, verified
//     when written and again when loaded.
//  3. peers: GET /v1/blobs/{digest} (with Range, resumable) from the
//     nearest peers whose catalog has the digest.
//  4. origin: MeshConfig.Origin, the same endpoint on a central node (the
//     coordinator's object store replaces it later).
//
// A request for a model this node does not have is forwarded at once
// (forward.go); with LazyLoad the node also starts acquiring the model,
// once however many requests ask (single flight), so that later requests
// are served here. A request that no peer can take waits for that
// acquisition within its deadline.

// acquisition is one model being fetched and loaded.
type acquisition struct {
	done chan struct{}
	err  error
}

// acquirer runs acquisitions, one per model name at a time.
type acquirer struct {
	n     *Node
	peers *peerIndex
	store *blobstore.Store
	mu    sync.Mutex
	runs  map[string]*acquisition
	wg    sync.WaitGroup
	stop  context.CancelFunc
	ctx   context.Context
}

func newAcquirer(n *Node, peers *peerIndex, store *blobstore.Store) *acquirer {
	ctx, cancel := context.WithCancel(context.Background())
	return &acquirer{n: n, peers: peers, store: store, runs: map[string]*acquisition{}, ctx: ctx, stop: cancel}
}

func (a *acquirer) close() {
	a.stop()
	a.wg.Wait()
}

// catalogEntry finds name (version "" = the highest ready one) in the
// peers' catalogs, with the peers that hold it, nearest first.
func (a *acquirer) catalogEntry(name, version string) (digest string, ver string, size int64, holders []peerTarget) {
	type holder struct {
		t       peerTarget
		version string
		digest  string
		size    int64
	}
	var hs []holder
	a.n.eachHolder(name, func(t peerTarget, e mesh.CatalogEntry) {
		if version == "" || e.Version == version {
			hs = append(hs, holder{t, e.Version, e.Digest, e.Bytes})
		}
	})
	if len(hs) == 0 {
		return "", "", 0, nil
	}
	best := hs[0]
	for _, h := range hs[1:] {
		if versionLess(best.version, h.version) {
			best = h
		}
	}
	for _, h := range hs {
		if h.digest == best.digest {
			holders = append(holders, h.t)
		}
	}
	slices.SortFunc(holders, func(x, y peerTarget) int { return cmp.Compare(x.RTT, y.RTT) })
	return best.digest, best.version, best.size, holders
}

// start begins acquiring name unless it is already under way; it returns
// the acquisition, or nil when no peer knows the model.
func (a *acquirer) start(name, version string) *acquisition {
	a.mu.Lock()
	defer a.mu.Unlock()
	if run, ok := a.runs[name]; ok {
		return run
	}
	digest, ver, size, holders := a.catalogEntry(name, version)
	if digest == "" {
		return nil
	}
	run := &acquisition{done: make(chan struct{})}
	a.runs[name] = run
	a.wg.Go(func() {
		run.err = a.acquire(name, ver, digest, size, holders)
		if run.err != nil {
			a.n.log.Warn("model acquisition failed", "model", name, "version", ver, "digest", digest, "err", run.err)
		}
		close(run.done)
		a.mu.Lock()
		delete(a.runs, name)
		a.mu.Unlock()
	})
	return run
}

// acquireTimeout bounds one acquisition.
const acquireTimeout = 10 * time.Minute

func (a *acquirer) acquire(name, ver, digest string, size int64, holders []peerTarget) error {
	ctx, cancel := context.WithTimeout(a.ctx, acquireTimeout)
	defer cancel()
	start := time.Now()
	if !a.store.Has(digest) {
		var sources []blobstore.Source
		for _, h := range holders {
			sources = append(sources, blobstore.Source{Name: h.ID, URL: "https://" + h.QUICAddr, Client: a.n.fwd.client})
		}
		if o := a.n.cfg.Mesh.Origin; o != "" {
			sources = append(sources, blobstore.Source{Name: "origin", URL: o, Client: a.n.fwd.originClient()})
		}
		if len(sources) == 0 {
			return errors.New("no peer or origin has it")
		}
		rep, err := a.store.Fetch(ctx, digest, size, sources)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", digest, err)
		}
		a.n.log.Info("model fetched", "model", name, "version", ver, "digest", digest, "bytes", rep.BytesReceived(), "took", time.Since(start))
	}
	b, err := a.store.ReadAll(digest) // verified against the digest
	if err != nil {
		return fmt.Errorf("read %s from the blob store: %w", digest, err)
	}
	if err := a.n.models.installAcquired(ctx, name, ver, b); err != nil {
		return err
	}
	a.n.log.Info("model acquired", "model", name, "version", ver, "took", time.Since(start))
	return nil
}

// wait waits for run within ctx.
func (run *acquisition) wait(ctx context.Context) error {
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// installAcquired loads a model version fetched from the mesh and makes
// it servable, with the default model configuration. It is not pinned:
// evictLocked may unload it when memory is short.
func (m *manager) installAcquired(ctx context.Context, name, ver string, b []byte) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	if v, err := m.lookup(name, ver); err == nil && v != nil {
		return nil // loaded meanwhile (e.g. from the repository)
	}
	rm := &repoModel{Name: name, Versions: []repoVersion{{Version: ver, ModTime: time.Now()}}}
	v, err := m.loadVersionBytes(ctx, rm, rm.Versions[0], b)
	if err != nil {
		return err
	}
	v.acquired = true
	m.mu.Lock()
	e, ok := m.models[name]
	if !ok || e.state != StateReady {
		e = &modelEntry{name: name, state: StateReady, versions: map[string]*version{}, latest: ver}
		m.models[name] = e
	}
	e.versions[ver] = v
	if versionLess(e.latest, ver) {
		e.latest = ver
	}
	evicted := m.evictLocked(v)
	m.mu.Unlock()
	for _, old := range evicted {
		old.close(ctx)
		m.forgetMetrics(old)
	}
	m.n.metrics.modelProvider.WithLabelValues(name, ver, v.session.Provider()).Set(1)
	m.refreshGauges()
	m.generation.Add(1)
	m.n.meshChanged()
	return nil
}

// evictLocked unloads acquired (unpinned) versions, least recently used
// first, while the loaded bytes exceed MaxLoadedBytes or the GPU bytes
// exceed GPUMemoryBytes; keep is never evicted. It returns the evicted
// versions for the caller to close outside m.mu.
func (m *manager) evictLocked(keep *version) []*version {
	lim := modelcache.Limits{Host: m.n.cfg.Mesh.MaxLoadedBytes, GPU: m.n.cfg.GPUMemoryBytes}
	if lim.Host <= 0 && lim.GPU <= 0 {
		return nil
	}
	// The decision is modelcache.VictimsWithin, the policy the simulations
	// measure: acquired versions least recently used first until the
	// loaded bytes (host and GPU) fit.
	var items []modelcache.Item
	var vers []*version
	for _, e := range m.models {
		for _, v := range e.versions {
			items = append(items, modelcache.Item{
				Key:       v.manifest.Name + "@" + v.manifest.Version,
				Bytes:     v.bytes,
				GPUBytes:  v.gpuBytes,
				LastUsed:  v.stats.lastInference.Load(),
				Evictable: v.acquired && v != keep,
			})
			vers = append(vers, v)
		}
	}
	var out []*version
	for _, i := range modelcache.VictimsWithin(items, lim) {
		v := vers[i]
		e := m.models[v.manifest.Name]
		delete(e.versions, v.manifest.Version)
		if len(e.versions) == 0 {
			delete(m.models, v.manifest.Name)
		} else if e.latest == v.manifest.Version {
			e.latest = ""
			for ver := range e.versions {
				if e.latest == "" || versionLess(e.latest, ver) {
					e.latest = ver
				}
			}
		}
		out = append(out, v)
		m.n.log.Info("model evicted from memory", "model", v.manifest.Name, "version", v.manifest.Version, "bytes", v.bytes, "gpu_bytes", v.gpuBytes)
	}
	return out
}

// serveBlobs answers GET /v1/blobs/{digest} for mesh peers only: the
// artifacts are the models' owners' property, not the public's.
func (n *Node) serveBlobs(w http.ResponseWriter, r *http.Request) {
	if n.blobs == nil {
		writeError(w, http.StatusNotFound, "this node keeps no blobs (not in a mesh)")
		return
	}
	if _, ok := meshtls.PeerID(r.TLS); !ok {
		writeError(w, http.StatusForbidden, "blobs are served to mesh peers only (a client certificate of the mesh CA)")
		return
	}
	n.blobs.Handler().ServeHTTP(w, r)
}

// storeRepositoryBlob puts a repository model's bytes into the blob store
// so that peers can fetch them; failures are logged, not fatal.
func (n *Node) storeRepositoryBlob(digest string, b []byte) {
	if n.blobs == nil || n.blobs.Has(digest) {
		return
	}
	if err := n.blobs.Put(context.Background(), digest, bytes.NewReader(b), int64(len(b))); err != nil {
		n.log.Warn("blob store: keep a repository model for peers", "digest", digest, "err", err)
		return
	}
	if err := n.blobs.Pin(digest); err != nil {
		n.log.Warn("blob store: pin", "digest", digest, "err", err)
	}
}

// waitAcquired serves the case where nobody could take a request for a
// model this node lacks: if the model can be acquired, the request waits
// for it within its deadline and then runs here.
func (n *Node) waitAcquired(r *http.Request, name, ver string) (*version, error) {
	if n.acq == nil {
		return nil, errNotAcquirable
	}
	run := n.acq.start(name, ver)
	if run == nil {
		return nil, errNotAcquirable
	}
	ctx := r.Context()
	if t, err := requestTimeout(r, 0); err == nil && t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	if err := run.wait(ctx); err != nil {
		return nil, err
	}
	return n.models.lookup(name, ver)
}

var errNotAcquirable = errors.New("not acquirable")

// eachHolder calls f for each ready catalog entry of name on a peer that
// can be reached over QUIC.
func (n *Node) eachHolder(name string, f func(peerTarget, mesh.CatalogEntry)) {
	if n.peerIdx == nil {
		return
	}
	for _, id := range n.peerIdx.holders(name) {
		p, ok := n.mesh.Peer(id)
		if !ok || p.Catalog == nil || p.QUICAddr == "" {
			continue
		}
		t := peerTarget{ID: p.ID, Role: string(p.Role), QUICAddr: p.QUICAddr, RTT: p.RTT}
		for _, e := range p.Catalog.Models {
			if e.Name == name && e.Ready {
				f(t, e)
			}
		}
	}
}

// holdersOf lists the peers whose catalog has this digest ready for name,
// nearest first.
func (n *Node) holdersOf(name, digest string) []peerTarget {
	var out []peerTarget
	n.eachHolder(name, func(t peerTarget, e mesh.CatalogEntry) {
		if e.Digest == digest && !slices.ContainsFunc(out, func(x peerTarget) bool { return x.ID == t.ID }) {
			out = append(out, t)
		}
	})
	slices.SortFunc(out, func(x, y peerTarget) int { return cmp.Compare(x.RTT, y.RTT) })
	return out
}
