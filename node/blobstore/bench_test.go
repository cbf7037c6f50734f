package blobstore

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Parameters of BenchmarkSwarmFetch (see doc.go for how to run it).
var (
	swarmNodes = flag.Int("swarm.nodes", 20, "BenchmarkSwarmFetch: number of nodes fetching at once")
	swarmMiB   = flag.Int("swarm.mib", 64, "BenchmarkSwarmFetch: artifact size in MiB")
	swarmRate  = flag.Float64("swarm.origin-mibps", 64, "BenchmarkSwarmFetch: origin egress per response, MiB/s (0: unthrottled)")
	swarmDir   = flag.String("swarm.dir", "", "BenchmarkSwarmFetch: directory for the stores (default: a temp dir; /dev/shm gives each node a disk of its own, in effect)")
)

// benchOrigin serves one artifact, with each response paced to a rate,
// and counts the body bytes it sends.
type benchOrigin struct {
	data []byte
	rate float64 // bytes per second per response; 0: unthrottled

	mu       sync.Mutex
	bytesOut int64
	requests int
}

func (o *benchOrigin) reset() (bytesOut int64, requests int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	bytesOut, requests = o.bytesOut, o.requests
	o.bytesOut, o.requests = 0, 0
	return
}

func (o *benchOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests++
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(&pacedWriter{ResponseWriter: w, o: o, start: time.Now()}, r, "", time.Time{}, bytes.NewReader(o.data))
}

// pacedWriter sends at most o.rate bytes per second since start.
type pacedWriter struct {
	http.ResponseWriter
	o     *benchOrigin
	start time.Time
	n     int64
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	const chunk = 64 << 10
	written := 0
	for len(p) > 0 {
		q := p[:min(len(p), chunk)]
		if w.o.rate > 0 {
			due := w.start.Add(time.Duration(float64(w.n) / w.o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		n, err := w.ResponseWriter.Write(q)
		w.n += int64(n)
		written += n
		w.o.mu.Lock()
		w.o.bytesOut += int64(n)
		w.o.mu.Unlock()
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// seederOf picks the node that fetches digest from the origin, by
// rendezvous hashing: the highest xxhash of digest and node ID. Every node
// computes the same answer from the member list alone.
func seederOf(digest string, ids []string) int {
	best, bestScore := 0, uint64(0)
	for i, id := range ids {
		if score := xxhash.Sum64String(digest + "\x00" + id); i == 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// BenchmarkSwarmFetch measures the target "20 nodes fetching a 64 MB
// artifact at once: origin egress <= 2x the artifact size, and completion
// within 2x the time of a single fetch". Each iteration times one store
// fetching the artifact alone from the origin, then N stores (each with
// its own HTTP server on loopback) fetching it at the same instant, each
// with sources [seeder, origin], the seeder (chosen by rendezvous hashing)
// with [origin] only. It reports origin-egress-x (bytes the origin served
// to the swarm / artifact size) and time-x (swarm completion / single
// fetch), averaged over the iterations.
func BenchmarkSwarmFetch(b *testing.B) {
	size := *swarmMiB << 20
	data, digest := blobOf(500, size)
	o := &benchOrigin{data: data, rate: *swarmRate * (1 << 20)}
	osrv := httptest.NewServer(o)
	defer osrv.Close()
	origin := Source{Name: "origin", URL: osrv.URL}
	ctx := context.Background()

	base := *swarmDir
	if base == "" {
		base = b.TempDir()
	}
	var sumEgress, sumTime, sumSingle, sumSwarm float64
	iters := 0
	b.SetBytes(int64(size))
	for b.Loop() {
		iter := iters
		iters++
		dir, err := os.MkdirTemp(base, "swarm-")
		if err != nil {
			b.Fatal(err)
		}
		// One fetch alone.
		single, err := Open(dir+"/single", 0)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := single.Fetch(ctx, digest, int64(size), []Source{origin}); err != nil {
			b.Fatal(err)
		}
		tSingle := time.Since(t0)
		o.reset()
		os.RemoveAll(dir + "/single")

		// The swarm.
		n := *swarmNodes
		stores := make([]*Store, n)
		srvs := make([]*httptest.Server, n)
		ids := make([]string, n)
		for i := range n {
			if stores[i], err = Open(fmt.Sprintf("%s/node%02d", dir, i), 0); err != nil {
				b.Fatal(err)
			}
			srvs[i] = httptest.NewServer(stores[i].Handler())
			ids[i] = fmt.Sprintf("node-%02d", i)
		}
		seeder := seederOf(digest, ids)
		// The seeder starts at the same instant as everyone else: ask it
		// to wait for its own download to begin rather than answer 404.
		seederSrc := Source{Name: "seeder", URL: srvs[seeder].URL, Wait: 2 * time.Second}
		var wg sync.WaitGroup
		errs := make([]error, n)
		reps := make([]FetchReport, n)
		start := make(chan struct{})
		for i := range n {
			sources := []Source{seederSrc, origin}
			if i == seeder {
				sources = []Source{origin}
			}
			wg.Go(func() {
				<-start
				reps[i], errs[i] = stores[i].Fetch(ctx, digest, int64(size), sources)
			})
		}
		t0 = time.Now()
		close(start)
		wg.Wait()
		tSwarm := time.Since(t0)
		egress, requests := o.reset()
		for i, err := range errs {
			if err != nil {
				b.Fatalf("node %d: %v", i, err)
			}
		}
		fallbacks := 0
		for i, r := range reps {
			if i != seeder && r.BytesFrom("origin") > 0 {
				fallbacks++
			}
		}
		for _, srv := range srvs {
			srv.Close()
		}
		os.RemoveAll(dir)

		ratioE := float64(egress) / float64(size)
		ratioT := tSwarm.Seconds() / tSingle.Seconds()
		sumEgress += ratioE
		sumTime += ratioT
		sumSingle += tSingle.Seconds()
		sumSwarm += tSwarm.Seconds()
		b.Logf("iteration %d: single %v, swarm of %d %v (x%.2f); origin served %.2fx the artifact in %d requests; %d nodes fell back to the origin",
			iter, tSingle.Round(time.Millisecond), n, tSwarm.Round(time.Millisecond), ratioT, ratioE, requests, fallbacks)
	}
	k := float64(iters)
	b.ReportMetric(sumEgress/k, "origin-egress-x")
	b.ReportMetric(sumTime/k, "time-x")
	b.ReportMetric(sumSingle/k, "single-s")
	b.ReportMetric(sumSwarm/k, "swarm-s")
}
