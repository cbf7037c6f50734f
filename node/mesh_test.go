package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
	"github.com/petrel-mesh/petrel/node/mesh"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/quic-go/quic-go/http3"
)

// A mesh of nodes in one process, on real loopback sockets: gossip over
// UDP and TCP (memberlist, encrypted), forwarding over HTTP/3 with mutual
// TLS from a development CA, clients over plain HTTP/1.1.

// meshLab is a CA and gossip key shared by the nodes of a test.
type meshLab struct {
	t     testing.TB
	caDir string
	key   []byte
}

func newMeshLab(t testing.TB) *meshLab {
	dir := t.TempDir()
	if _, err := meshtls.NewDevCA(dir, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	return &meshLab{t: t, caDir: dir, key: []byte("0123456789abcdef0123456789abcdef")}
}

// fastGossip shortens memberlist's local profile so that tests converge
// in well under a second.
func fastGossip(g *node.GossipTiming) {
	g.ProbeInterval = 100 * time.Millisecond
	g.ProbeTimeout = 50 * time.Millisecond
	g.GossipInterval = 20 * time.Millisecond
	g.PushPullInterval = 300 * time.Millisecond
	g.SuspicionMult = 2
}

// start runs a mesh node serving repo (nil: an empty repository).
func (l *meshLab) start(id string, r *repo, seeds []string, mutate func(*node.Config), opts ...node.Option) *testNode {
	l.t.Helper()
	if r == nil {
		r = newRepo(l.t)
	}
	cfg := testConfig(l.t, r.dir)
	cfg.ID = id
	cfg.PlainTCP = true
	cfg.Mesh = node.MeshConfig{
		Enabled: true, GossipBind: "127.0.0.1:0", Profile: "local", Seeds: seeds,
		GossipKeys: [][]byte{l.key}, TLSDir: l.caDir, Tune: fastGossip,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	tn := startNode(l.t, cfg, opts...)
	tn.caFile = filepath.Join(l.caDir, "ca.pem") // the listeners present mesh certificates
	return tn
}

// waitMesh waits until every node sees every other alive with a current
// catalog.
func waitMesh(t testing.TB, nodes ...*testNode) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := ""
		for _, n := range nodes {
			for _, o := range nodes {
				if o == n {
					continue
				}
				p, ok := n.Mesh().Peer(o.cfg.ID)
				if !ok || p.State != mesh.StateAlive || !p.CatalogCurrent {
					missing = fmt.Sprintf("%s does not see %s alive with its catalog (%+v)", n.cfg.ID, o.cfg.ID, p.State)
					break
				}
			}
			if missing != "" {
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mesh did not converge: %s", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inferVia sends one JSON request for model to n over HTTP/1.1 and checks
// the answer against m's forward pass.
func inferVia(t *testing.T, n *testNode, model string, m *onnx.Model, rng *rand.Rand) reply {
	t.Helper()
	req, x := mlpRequest(m, rng, 1)
	body, hl := encode(t, req, false)
	rep := n.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/"+model+"/infer", body, inferHeaders(hl))
	if rep.status == http.StatusOK {
		checkMLP(t, m, x, decodeReply(t, rep).Outputs)
	}
	return rep
}

func TestMeshForwarding(t *testing.T) {
	l := newMeshLab(t)
	ra, rb, rd := newRepo(t), newRepo(t), newRepo(t)
	ma := ra.smallMLP("a", 11, "")
	mb := rb.smallMLP("b", 12, "")
	central := newRepo(t)
	central.smallMLP("a", 11, "")
	central.smallMLP("b", 12, "")
	md := central.smallMLP("d", 14, "")
	_ = rd

	n0 := l.start("edge-0", ra, nil, nil)
	seeds := []string{n0.GossipAddr()}
	n1 := l.start("edge-1", rb, seeds, nil)
	n2 := l.start("edge-2", rb, seeds, nil)
	n3 := l.start("edge-3", nil, seeds, nil)
	n4 := l.start("edge-4", ra, seeds, nil)
	c := l.start("central-0", central, seeds, func(cfg *node.Config) { cfg.Mesh.Role = "central" })
	waitMesh(t, n0, n1, n2, n3, n4, c)

	rng := rand.New(rand.NewPCG(1, 2))
	t.Run("local", func(t *testing.T) {
		rep := inferVia(t, n1, "b", mb, rng)
		if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "edge-1" || rep.header.Get(node.HeaderForwardedBy) != "" {
			t.Fatalf("status %d served by %q forwarded by %q", rep.status, rep.header.Get(node.HeaderServedBy), rep.header.Get(node.HeaderForwardedBy))
		}
	})
	t.Run("to an edge peer", func(t *testing.T) {
		for range 10 {
			rep := inferVia(t, n3, "b", mb, rng)
			served := rep.header.Get(node.HeaderServedBy)
			if rep.status != http.StatusOK || (served != "edge-1" && served != "edge-2") || rep.header.Get(node.HeaderForwardedBy) != "edge-3" {
				t.Fatalf("status %d %s, served by %q forwarded by %q", rep.status, rep.body, served, rep.header.Get(node.HeaderForwardedBy))
			}
		}
		// Edge peers come before the central node, which has b too.
		rep := inferVia(t, n0, "b", mb, rng)
		if s := rep.header.Get(node.HeaderServedBy); s == "central-0" {
			t.Errorf("edge-0's request for b went to the central tier while edge peers had it")
		}
	})
	t.Run("to the central tier", func(t *testing.T) {
		rep := inferVia(t, n3, "d", md, rng)
		if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "central-0" {
			t.Fatalf("status %d %s, served by %q", rep.status, rep.body, rep.header.Get(node.HeaderServedBy))
		}
	})
	t.Run("nobody has it", func(t *testing.T) {
		rep := inferVia(t, n3, "nowhere", ma, rng)
		wantError(t, rep, http.StatusNotFound, "nowhere")
	})
	t.Run("bad body is answered here", func(t *testing.T) {
		rep := n3.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/b/infer", []byte(`{"inputs": [`), nil)
		wantError(t, rep, http.StatusBadRequest)
		if rep.header.Get(node.HeaderForwardedBy) != "" {
			t.Error("a malformed body was forwarded")
		}
	})
	t.Run("forged mesh headers", func(t *testing.T) {
		req, _ := mlpRequest(mb, rng, 1)
		body, hl := encode(t, req, false)
		for _, h := range []map[string]string{{node.HeaderHops: "1"}, {node.HeaderVia: "edge-9"}} {
			hdr := inferHeaders(hl)
			for k, v := range h {
				hdr[k] = v
			}
			rep := n3.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/b/infer", body, hdr)
			wantError(t, rep, http.StatusForbidden, "mesh")
		}
	})
	t.Run("hop limit and bad hop headers from a real peer", func(t *testing.T) {
		pc := peerClient(t, l, "edge-9")
		req, _ := mlpRequest(mb, rng, 1)
		body, hl := encode(t, req, true)
		for _, c := range []struct {
			hops, via string
			status    int
		}{
			{"2", "edge-7,edge-8", http.StatusNotFound}, // at the limit: not forwarded again
			{"1", "edge-8", http.StatusOK},              // forwarded on to edge-1 or edge-2
			{"x", "", http.StatusBadRequest},
			{"0", "", http.StatusBadRequest},
			{"9", "", http.StatusBadRequest},
			{"1", "a,,b", http.StatusBadRequest},
			{"1", "edge-7,edge-8", http.StatusBadRequest}, // more nodes than hops
			{"1", strings.Repeat("n,", 600), http.StatusBadRequest},
		} {
			hdr := http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {fmt.Sprint(hl)}, node.HeaderHops: {c.hops}}
			if c.via != "" {
				hdr.Set(node.HeaderVia, c.via)
			}
			status, msg := pc.post(t, "https://"+n3.Addr()+"/v2/models/b/infer", body, hdr)
			if status != c.status {
				t.Errorf("hops %q via %q: status %d (%s), want %d", c.hops, c.via, status, msg, c.status)
			}
		}
		// A peer listed in Via is not chosen again.
		for range 5 {
			hdr := http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {fmt.Sprint(hl)}, node.HeaderHops: {"1"}, node.HeaderVia: {"edge-1"}}
			if status, msg := pc.post(t, "https://"+n3.Addr()+"/v2/models/b/infer", body, hdr); status != http.StatusOK || !strings.Contains(msg, "served by edge-2") {
				t.Errorf("with edge-1 visited: status %d (%s), want edge-2 to serve", status, msg)
			}
		}
	})
	text := scrape(t, n3.raw(t, client.HTTP1))
	if v, ok := metricValue(text, "petrel_forwarded_requests_total", map[string]string{"result": "ok"}); !ok || v < 11 {
		t.Errorf("edge-3 counted %v successful forwards, want at least 11", v)
	}
}

// peerClient is an HTTP/3 client holding a mesh certificate for id.
type meshPeerClient struct{ c *http.Client }

func peerClient(t *testing.T, l *meshLab, id string) *meshPeerClient {
	t.Helper()
	ca, err := meshtls.LoadCA(l.caDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueNode(id, []string{"127.0.0.1"}, t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := meshtls.ClientConfig(cert, key, ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http3.Transport{TLSClientConfig: tc}
	t.Cleanup(func() { tr.Close() })
	return &meshPeerClient{c: &http.Client{Transport: tr, Timeout: requestTimeout}}
}

func (p *meshPeerClient) post(t *testing.T, url string, body []byte, hdr http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := p.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	fmt.Fprintf(b, "served by %s: ", resp.Header.Get(node.HeaderServedBy))
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// TestMeshFallbackProtocols: the central tier's URL works over HTTP/1.1
// and HTTP/2 with mutual TLS on TCP, as over HTTP/3.
func TestMeshFallbackProtocols(t *testing.T) {
	l := newMeshLab(t)
	cr := newRepo(t)
	m := cr.smallMLP("only-central", 22, "")
	c := l.start("central-2", cr, nil, func(cfg *node.Config) {
		cfg.PlainTCP = false // TLS on TCP with the mesh certificate
		cfg.Mesh.Role = "central"
	})
	rng := rand.New(rand.NewPCG(3, 5))
	for _, proto := range []string{"h1", "h2", "h3"} {
		e := l.start("edge-"+proto, nil, nil, func(cfg *node.Config) {
			cfg.Mesh.Fallback = []string{"https://" + c.Addr()}
			cfg.Mesh.FallbackProtocol = proto
		})
		rep := inferVia(t, e, "only-central", m, rng)
		if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "central-2" {
			t.Errorf("fallback over %s: status %d %s served by %q", proto, rep.status, rep.body, rep.header.Get(node.HeaderServedBy))
		}
	}
}

// TestMeshFallback: with no peer holding the model, the request goes to
// the central tier's URL (not a gossip member here), behind a circuit
// breaker.
func TestMeshFallback(t *testing.T) {
	l := newMeshLab(t)
	cr := newRepo(t)
	m := cr.smallMLP("only-central", 21, "")
	c := l.start("central-1", cr, nil, func(cfg *node.Config) { cfg.Mesh.Role = "central" })
	e := l.start("edge-1", nil, nil, func(cfg *node.Config) {
		cfg.Mesh.Fallback = []string{"https://" + c.Addr()}
	})
	rng := rand.New(rand.NewPCG(3, 4))
	rep := inferVia(t, e, "only-central", m, rng)
	if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "central-1" || rep.header.Get(node.HeaderForwardedBy) != "edge-1" {
		t.Fatalf("status %d %s served by %q", rep.status, rep.body, rep.header.Get(node.HeaderServedBy))
	}
	// The central node gone: the edge answers 503 with the reason, and
	// after repeated failures the breaker stops trying.
	c.Kill()
	for i := range 4 {
		start := time.Now()
		rep = inferVia(t, e, "only-central", m, rng)
		wantError(t, rep, http.StatusServiceUnavailable)
		if i == 3 {
			if !strings.Contains(string(rep.body), "circuit open") {
				t.Errorf("after 3 failures: %s, want the circuit open", rep.body)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("with the circuit open the edge still took %v to answer", d)
			}
		}
	}
}

// TestMeshKillPeer: a load generator sends idempotent requests through
// one node while a peer serving the model is killed (no leave, no
// drain). The other holder takes over; clients see no errors.
func TestMeshKillPeer(t *testing.T) {
	l := newMeshLab(t)
	rb := newRepo(t)
	mb := rb.smallMLP("b", 31, "")
	n0 := l.start("edge-0", nil, nil, nil)
	seeds := []string{n0.GossipAddr()}
	n1 := l.start("edge-1", rb, seeds, nil)
	n2 := l.start("edge-2", rb, seeds, nil)
	waitMesh(t, n0, n1, n2)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			c := n0.raw(t, client.HTTP1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := mlpRequest(mb, rng, 1)
				body, hl := encode(t, req, false)
				hdr := inferHeaders(hl)
				hdr[node.HeaderTimeout] = "5000"
				rep, err := c.try(http.MethodPost, "/v2/models/b/infer", body, hdr)
				if err == nil && rep.status == http.StatusOK {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				if err == nil {
					err = fmt.Errorf("status %d: %s", rep.status, rep.body)
				}
				firstErr.CompareAndSwap(nil, err.Error())
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	before := ok.Load()
	n1.Kill()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests answered (%d before the kill), %d failed", ok.Load(), before, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d client-visible errors after killing a peer; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() <= before {
		t.Error("no request was answered after the kill")
	}
	// The survivors notice the failure.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := n0.Mesh().Peer("edge-1")
		if p.State == mesh.StateDead || p.State == mesh.StateLeft {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge-0 still sees edge-1 as %v", p.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMeshAcquire: a node asked for a model that only a peer has forwards
// the request, fetches the artifact from the peer's blob store (mutual
// TLS, verified digest), loads it, and serves later requests itself.
func TestMeshAcquire(t *testing.T) {
	l := newMeshLab(t)
	r := newRepo(t)
	m := r.smallMLP("m", 41, "")
	holder := l.start("holder", r, nil, nil)
	lazy := l.start("lazy", nil, []string{holder.GossipAddr()}, func(cfg *node.Config) {
		cfg.Mesh.LazyLoad = true
		cfg.Mesh.BlobDir = t.TempDir()
	})
	waitMesh(t, holder, lazy)
	rng := rand.New(rand.NewPCG(5, 6))
	rep := inferVia(t, lazy, "m", m, rng)
	if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "holder" {
		t.Fatalf("first request: status %d %s served by %q", rep.status, rep.body, rep.header.Get(node.HeaderServedBy))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		rep = inferVia(t, lazy, "m", m, rng)
		if rep.status == http.StatusOK && rep.header.Get(node.HeaderServedBy) == "lazy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lazy never served m itself: last status %d served by %q", rep.status, rep.header.Get(node.HeaderServedBy))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Blobs are for mesh peers only.
	var meta struct {
		Parameters struct {
			Digest string `json:"digest"`
		} `json:"parameters"`
	}
	holder.raw(t, client.HTTP1).getJSON(t, "/v2/models/m", &meta)
	rep = holder.raw(t, client.HTTP1).do(t, http.MethodGet, "/v1/blobs/"+meta.Parameters.Digest, nil, nil)
	wantError(t, rep, http.StatusForbidden, "mesh peers")
	pc := peerClient(t, l, "edge-9")
	resp, err := pc.c.Get("https://" + holder.Addr() + "/v1/blobs/" + meta.Parameters.Digest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a mesh peer got %d for a blob", resp.StatusCode)
	}
}

// TestMeshKeyRotationAndEviction: the gossip keyring rotates on running
// nodes without losing members (a node with only the new key joins
// afterwards, one with only the old key cannot); and acquired models are
// evicted least recently used beyond the memory bound while repository
// models stay.
func TestMeshKeyRotationAndEviction(t *testing.T) {
	l := newMeshLab(t)
	r := newRepo(t)
	m1 := r.smallMLP("m1", 61, "")
	m2 := r.smallMLP("m2", 62, "")
	own := newRepo(t)
	mo := own.smallMLP("own", 63, "")
	holder := l.start("holder", r, nil, nil)
	lazy := l.start("lazy", own, []string{holder.GossipAddr()}, func(cfg *node.Config) {
		cfg.Mesh.LazyLoad = true
		cfg.Mesh.BlobDir = t.TempDir()
		cfg.Mesh.MaxLoadedBytes = 60 << 10 // room for own plus one more small MLP (~37 KB each)
	})
	waitMesh(t, holder, lazy)

	rng := rand.New(rand.NewPCG(7, 8))
	servedHere := func(model string, m *onnx.Model) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			rep := inferVia(t, lazy, model, m, rng)
			if rep.status == http.StatusOK && rep.header.Get(node.HeaderServedBy) == "lazy" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never served by lazy itself (last: %d from %q)", model, rep.status, rep.header.Get(node.HeaderServedBy))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	servedHere("m1", m1)
	servedHere("m2", m2) // evicts m1, the least recently used acquired model
	ready := func(model string) int {
		return lazy.raw(t, client.HTTP1).do(t, http.MethodGet, "/v2/models/"+model+"/ready", nil, nil).status
	}
	if s := ready("m1"); s == http.StatusOK {
		t.Error("m1 still loaded on lazy after m2 pushed the loaded bytes over the bound")
	}
	if s := ready("own"); s != http.StatusOK {
		t.Errorf("the repository model was evicted (ready %d)", s)
	}
	if rep := inferVia(t, lazy, "own", mo, rng); rep.status != http.StatusOK {
		t.Errorf("own: %d", rep.status)
	}

	// Key rotation: add the new key, make it primary, drop the old.
	newKey := []byte("fedcba9876543210fedcba9876543210")
	for _, step := range [][][]byte{{l.key, newKey}, {newKey, l.key}, {newKey}} {
		for _, n := range []*testNode{holder, lazy} {
			if err := n.SetGossipKeys(step); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := l.start("old-key", nil, []string{holder.GossipAddr()}, nil)
	l.key = newKey
	fresh := l.start("new-key", nil, []string{holder.GossipAddr()}, nil)
	waitMesh(t, holder, lazy, fresh)
	time.Sleep(300 * time.Millisecond)
	if p, ok := holder.Mesh().Peer("old-key"); ok && p.State == mesh.StateAlive {
		t.Error("a node with only the retired key joined")
	}
	_ = old
}

// TestMeshPreload: a node told to preload a model that only a peer has
// acquires it at start, before any request asks for it.
func TestMeshPreload(t *testing.T) {
	l := newMeshLab(t)
	r := newRepo(t)
	m := r.smallMLP("popular", 71, "")
	holder := l.start("holder", r, nil, nil)
	warm := l.start("warm", nil, []string{holder.GossipAddr()}, func(cfg *node.Config) {
		cfg.Mesh.LazyLoad = true
		cfg.Mesh.BlobDir = t.TempDir()
		cfg.Mesh.Preload = []string{"popular"}
	})
	deadline := time.Now().Add(15 * time.Second)
	for warm.raw(t, client.HTTP1).do(t, http.MethodGet, "/v2/models/popular/ready", nil, nil).status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the preloaded model never became ready on warm")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep := inferVia(t, warm, "popular", m, rand.New(rand.NewPCG(9, 9)))
	if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "warm" {
		t.Fatalf("status %d served by %q", rep.status, rep.header.Get(node.HeaderServedBy))
	}
}

// TestMeshDeadlineAcrossHops: a forwarded request does not outlive the
// client's deadline: with a peer whose run takes 2 s and a 300 ms
// deadline, the front answers 504 near the deadline, not after the run.
// (The remaining time also travels in Petrel-Timeout, which the peer
// honours like any client's, see TestDeadlines.)
func TestMeshDeadlineAcrossHops(t *testing.T) {
	l := newMeshLab(t)
	r := newRepo(t)
	m := r.smallMLP("slow", 81, `{"max_batch_size": 1, "concurrency": 1, "labels": {"`+labelDelay+`": "2000"}}`)
	var sl slowLoader
	holder := l.start("holder", r, nil, nil, sl.option())
	front := l.start("front", nil, []string{holder.GossipAddr()}, nil)
	waitMesh(t, holder, front)
	req, _ := mlpRequest(m, rand.New(rand.NewPCG(1, 1)), 1)
	body, hl := encode(t, req, false)
	hdr := inferHeaders(hl)
	hdr[node.HeaderTimeout] = "300"
	start := time.Now()
	rep := front.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/slow/infer", body, hdr)
	took := time.Since(start)
	wantError(t, rep, http.StatusGatewayTimeout)
	if took > 1500*time.Millisecond {
		t.Errorf("the front answered after %v: the 300 ms deadline did not travel with the request (the peer's run takes 2 s)", took)
	}
}

// TestMeshGracefulLeave: a node that shuts down announces it first; its
// peers record it as left (not failed) and stop sending it requests.
func TestMeshGracefulLeave(t *testing.T) {
	l := newMeshLab(t)
	r := newRepo(t)
	m := r.smallMLP("b", 91, "")
	n0 := l.start("edge-0", nil, nil, nil)
	seeds := []string{n0.GossipAddr()}
	n1 := l.start("edge-1", r, seeds, nil)
	n2 := l.start("edge-2", r, seeds, nil)
	waitMesh(t, n0, n1, n2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n1.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _ := n0.Mesh().Peer("edge-1")
		if p.State == mesh.StateLeft {
			break
		}
		if p.State == mesh.StateDead || time.Now().After(deadline) {
			t.Fatalf("edge-0 sees edge-1 as %v after its shutdown, want left", p.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for range 20 {
		rep := inferVia(t, n0, "b", m, rng)
		if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "edge-2" {
			t.Fatalf("after edge-1 left: status %d served by %q", rep.status, rep.header.Get(node.HeaderServedBy))
		}
	}
}
