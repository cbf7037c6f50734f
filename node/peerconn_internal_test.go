package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestForwardMethodFallsBackToPOST: a peer from before PETREL-FORWARD
// answers it 405 (its mux knows only POST); the forwarder resends the
// request as a POST, remembers the peer, and POSTs to it from then on.
func TestForwardMethodFallsBackToPOST(t *testing.T) {
	dir := t.TempDir()
	ca, err := meshtls.NewDevCA(filepath.Join(dir, "ca"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var certs [2][2]string
	for i, id := range []string{"old", "new"} {
		certs[i][0], certs[i][1], err = ca.IssueNode(id, []string{"127.0.0.1"}, filepath.Join(dir, id), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(dir, "ca", "ca.pem")
	srvTLS, err := meshtls.ServerConfig(certs[0][0], certs[0][1], caFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var methods []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/models/{model}/infer", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Petrel-Served-By", "old")
		w.Write(b)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{TLSConfig: http3.ConfigureTLSConfig(srvTLS), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(pc)
	defer srv.Close()

	cliTLS, err := meshtls.ClientConfig(certs[1][0], certs[1][1], caFile)
	if err != nil {
		t.Fatal(err)
	}
	h3 := &http3.Transport{TLSClientConfig: cliTLS, QUICConfig: &quic.Config{HandshakeIdleTimeout: 2 * time.Second}}
	defer h3.Close()
	f := &forwarder{n: &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil))}, cfg: MeshConfig{ForwardMethod: "stream"},
		h3: h3, client: &http.Client{Transport: h3}, pc: newPeerConns(h3, cliTLS, h3.QUICConfig)}
	defer f.pc.close()
	target := peerTarget{ID: "old", QUICAddr: pc.LocalAddr().String()}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a, err := f.sendPeer(ctx, target, "/v2/models/m/infer", []byte("payload"), http.Header{})
		cancel()
		if err != nil || a.status != 200 || string(a.body) != "payload" {
			t.Fatalf("request %d: %+v %v", i, a, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{MethodForward, "POST", "POST"}
	if len(methods) != len(want) {
		t.Fatalf("methods %v, want %v", methods, want)
	}
	for i := range want {
		if methods[i] != want[i] {
			t.Fatalf("methods %v, want %v", methods, want)
		}
	}
}

// TestForwardMethodNeedsMeshPeer: PETREL-FORWARD from a client without a
// mesh certificate is refused.
func TestForwardMethodNeedsMeshPeer(t *testing.T) {
	n := &Node{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	req, _ := http.NewRequest(MethodForward, "/v2/models/m/infer", nil)
	w := &recorder{h: http.Header{}}
	n.handleInfer(w, req)
	if w.status != http.StatusForbidden {
		t.Fatalf("status %d", w.status)
	}
}

type recorder struct {
	h      http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	r.body = append(r.body, b...)
	return len(b), nil
}
func (r *recorder) WriteHeader(s int) { r.status = s }
