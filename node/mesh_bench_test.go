package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/bench"
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

// BenchmarkForwardHopProcesses is BenchmarkForwardHop across processes,
// as a client sees it: two `petrel node` processes in one mesh on
// loopback, "srv" with the small MLP and "front" without it, and the
// benchmark's lean HTTP/1.1 load client at concurrency 1 sending to srv
// (direct) and to front (forwarded to srv over HTTP/3 with mutual TLS).
// The two alternate in 2-second windows, direct then forwarded, six
// pairs, so that slow drifts of the machine hit both; each pair gives a
// difference of p50s, and the median pair is reported (the issue's
// target: ≤ 300 µs). With -hop.interleave the requests alternate one by
// one instead, which exposes both to the same instant noise but makes
// every request find the other process idle (a cold wake-up each time).
//
//	go test -run '^$' -bench ForwardHopProcesses -benchtime 1x ./node/
func BenchmarkForwardHopProcesses(b *testing.B) {
	lib, err := ort.FindLibrary("")
	if err != nil {
		b.Fatalf("needs the ONNX Runtime shared library: %v", err)
	}
	bin := buildPetrel(b)
	l := newMeshLab(b)
	keys := filepath.Join(b.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(base64.StdEncoding.EncodeToString(l.key)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	r := newRepo(b)
	m := r.smallMLP("mlp-small", 7, "")
	empty := newRepo(b)
	ports := freePorts(b, 6)
	start := func(id, repoDir string, extra ...string) {
		args := append([]string{"node", "--id", id, "--plain-tcp", "--model-repo", repoDir,
			"--gossip-key-file", keys, "--mesh-tls-dir", l.caDir, "--gossip-profile", "local",
			"--blob-dir", b.TempDir(), "--lazy-load=false", "--log-level", "warn"}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), ort.EnvLibrary+"="+lib)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		})
	}
	srvURL, frontURL, postURL := "http://127.0.0.1:"+ports[0], "http://127.0.0.1:"+ports[1], "http://127.0.0.1:"+ports[4]
	start("srv", r.dir, "--listen", "127.0.0.1:"+ports[0], "--gossip-bind", "127.0.0.1:"+ports[2])
	start("front", empty.dir, "--listen", "127.0.0.1:"+ports[1], "--gossip-bind", "127.0.0.1:"+ports[3], "--join", "127.0.0.1:"+ports[2])
	// The same front node forwarding with quic-go's RoundTrip (POST), for
	// the side-by-side figure.
	start("front-post", empty.dir, "--listen", "127.0.0.1:"+ports[4], "--gossip-bind", "127.0.0.1:"+ports[5], "--join", "127.0.0.1:"+ports[2],
		"--forward-method", "post")

	req, _ := mlpRequest(m, rand.New(rand.NewPCG(1, 1)), 1)
	body, hl := encode(b, req, false)
	path := "/v2/models/mlp-small/infer"
	// Wait until both fronts forward.
	deadline := time.Now().Add(60 * time.Second)
	for _, f := range []struct{ url, id string }{{frontURL, "front"}, {postURL, "front-post"}} {
		for {
			resp, err := http.Post(f.url+path, "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && resp.Header.Get(node.HeaderForwardedBy) == f.id {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never forwarded: %v", f.id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	mix := []bench.Target{
		{Name: "direct", URL: srvURL, Path: path, Body: body, HeaderLen: hl, Rows: 1},
		{Name: "forwarded", URL: frontURL, Path: path, Body: body, HeaderLen: hl, Rows: 1},
		{Name: "forwarded-post", URL: postURL, Path: path, Body: body, HeaderLen: hl, Rows: 1},
	}
	var direct, fwd, diff, postDiff []float64
	b.ResetTimer()
	for range max(b.N, 1) {
		if *hopInterleave {
			for range 3 {
				reps, err := bench.RunMix(context.Background(), bench.Config{Concurrency: 1, Warmup: 500 * time.Millisecond, Duration: 4 * time.Second}, mix)
				if err != nil {
					b.Fatal(err)
				}
				d, f, p := float64(reps[0].P50.Microseconds()), float64(reps[1].P50.Microseconds()), float64(reps[2].P50.Microseconds())
				direct, fwd, diff, postDiff = append(direct, d), append(fwd, f), append(diff, f-d), append(postDiff, p-d)
			}
			continue
		}
		for range *hopRounds {
			var p50 [3]float64
			for i, tg := range mix {
				rep, err := bench.Run(context.Background(), bench.Config{URL: tg.URL, Path: tg.Path, Body: tg.Body, HeaderLen: tg.HeaderLen, Rows: 1,
					Concurrency: 1, Warmup: 300 * time.Millisecond, Duration: 2 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				p50[i] = float64(rep.P50.Microseconds())
			}
			direct, fwd, diff = append(direct, p50[0]), append(fwd, p50[1]), append(diff, p50[1]-p50[0])
			postDiff = append(postDiff, p50[2]-p50[0])
		}
	}
	b.StopTimer()
	med := func(s []float64) float64 { s = slices.Clone(s); slices.Sort(s); return s[(len(s)-1)/2] }
	b.Logf("rounds: direct p50 %v µs, forwarded p50 %v µs, hop %v µs; hop with --forward-method post %v µs", direct, fwd, diff, postDiff)
	b.ReportMetric(med(direct), "direct-p50-µs")
	b.ReportMetric(med(fwd), "forwarded-p50-µs")
	b.ReportMetric(med(diff), "hop-added-p50-µs")
	b.ReportMetric(med(postDiff), "hop-post-p50-µs")
}

var hopRounds = flag.Int("hop.rounds", 6, "BenchmarkForwardHopProcesses: windows per target")

var hopInterleave = flag.Bool("hop.interleave", false, "BenchmarkForwardHopProcesses: alternate request by request instead of in windows")

// freePorts finds n free TCP ports that are also free for UDP.
func freePorts(t testing.TB, n int) []string {
	var out []string
	for len(out) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+port)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		out = append(out, port)
	}
	return out
}
