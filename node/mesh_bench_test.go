package node_test

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// BenchmarkForwardHop measures what one forwarding hop adds to a request:
// the small MLP (64 → 128 → 16), JSON over HTTP/1.1 from the client,
// sent alternately straight to the node that serves it and to a peer that
// forwards it there (HTTP/3, mutual TLS, binary tensors), one request at
// a time. It reports both p50s and their difference (the target:
// ≤ 300 µs). Both nodes run in this process on loopback.
//
//	go test -run '^$' -bench ForwardHop -benchtime 4000x ./node/
func BenchmarkForwardHop(b *testing.B) {
	l := newMeshLab(b)
	r := newRepo(b)
	m := r.smallMLP("mlp-small", 7, "")
	server := l.start("server", r, nil, nil)
	front := l.start("front", nil, []string{server.GossipAddr()}, nil)
	waitMesh(b, server, front)
	rng := rand.New(rand.NewPCG(1, 1))
	req, _ := mlpRequest(m, rng, 1)
	body, hl := encode(b, req, false)
	hdr := inferHeaders(hl)
	direct, hop := server.raw(b, client.HTTP1), front.raw(b, client.HTTP1)
	send := func(c *raw, wantForward bool) time.Duration {
		t0 := time.Now()
		rep := c.do(b, http.MethodPost, "/v2/models/mlp-small/infer", body, hdr)
		d := time.Since(t0)
		if rep.status != http.StatusOK || (rep.header.Get(node.HeaderForwardedBy) != "") != wantForward {
			b.Fatalf("status %d %s, forwarded by %q", rep.status, rep.body, rep.header.Get(node.HeaderForwardedBy))
		}
		return d
	}
	for range 200 { // warm up connections, caches and the hedging tracker
		send(direct, false)
		send(hop, true)
	}
	var dl, hl2 []time.Duration
	b.ResetTimer()
	for range b.N {
		dl = append(dl, send(direct, false))
		hl2 = append(hl2, send(hop, true))
	}
	b.StopTimer()
	slices.Sort(dl)
	slices.Sort(hl2)
	p50 := func(s []time.Duration) float64 { return float64(s[len(s)/2].Microseconds()) }
	b.ReportMetric(p50(dl), "direct-p50-µs")
	b.ReportMetric(p50(hl2), "forwarded-p50-µs")
	b.ReportMetric(p50(hl2)-p50(dl), "hop-added-p50-µs")
}
