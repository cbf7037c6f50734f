package coordinator_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/node"
)

var (
	benchNodes   = flag.Int("push.nodes", 10, "BenchmarkPushToServing: nodes")
	benchMB      = flag.Int("push.mb", 10, "BenchmarkPushToServing: model size, MB (approximately)")
	ingestNodes  = flag.Int("ingest.nodes", 1000, "BenchmarkIngest: simulated nodes")
	ingestWindow = flag.Duration("ingest.window", 5*time.Second, "BenchmarkIngest: paced run length")
)

// BenchmarkPushToServing measures a push of a ~10 MB model until every
// node serves it: multipart upload, the validation gate (load, golden,
// latency), signing, the object store, the desired state, and on each
// node the watch, fetch, verify, load and golden warm-up, until the node's
// own readiness endpoint says yes. Target: ≤ 3 s for 10 nodes.
func BenchmarkPushToServing(b *testing.B) {
	m := newTestMesh(b, meshOpts{nodes: *benchNodes, mutate: func(c *coordinator.Config) {
		c.Validate.LatencyBudget, c.Validate.LatencyRuns = 0, 0 // the defaults: 50 ms, 20 runs
		c.KeepVersions = 3
	}})
	// 64 -> h -> h -> 16 with h chosen for the size: weights are 4 bytes.
	h := 64
	for (64*h+h*h+h*16)*4 < *benchMB<<20 {
		h += 16
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		ver := fmt.Sprint(i + 1)
		model, golden := mlpVersion(b, uint64(i+1), 64, h, h, 16)
		if i == 0 {
			b.Logf("model: 64-%d-%d-16 MLP, %.1f MB; %d nodes", h, h, float64(len(model))/(1<<20), len(m.nodes))
		}
		start := time.Now()
		if st, body := m.push(pushToken, "big", ver, model, golden, nil); st != 201 {
			b.Fatalf("push: %d %s", st, body)
		}
		pushed := time.Since(start)
		if st, body := m.api("POST", "/v1/models/big/deploy", pushToken, coordinator.DeployRequest{Version: ver}, nil); st != 200 {
			b.Fatalf("deploy: %d %s", st, body)
		}
		var wg sync.WaitGroup
		last := make([]time.Duration, len(m.nodes))
		for j, n := range m.nodes {
			wg.Go(func() {
				url := "http://" + n.Addr() + "/v2/models/big/versions/" + ver + "/ready"
				for {
					resp, err := http.Get(url)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							last[j] = time.Since(start)
							return
						}
					}
					if time.Since(start) > time.Minute {
						b.Errorf("node %d never served version %s", j, ver)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		all := time.Since(start)
		total += all
		first := all
		for _, d := range last {
			first = min(first, d)
		}
		b.Logf("version %s: push accepted %v, first node serving %v, all %d serving %v",
			ver, pushed.Round(time.Millisecond), first.Round(time.Millisecond), len(m.nodes), all.Round(time.Millisecond))
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-serving")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIngest simulates nodes reporting status and statistics every
// second (a status and a stats message each) and measures how much of the
// coordinator's ingest capacity they use, then how fast it drains a
// burst. Target: 1,000 nodes without falling behind; the headroom is
// 1 / (busy fraction).
func BenchmarkIngest(b *testing.B) {
	m := newTestMesh(b, meshOpts{nodes: 0})
	pub, err := nats.Connect(m.c.NATSURL(), nats.UserInfo("node", "node-password"))
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	names := bus.Names{}
	nNodes := *ingestNodes
	// Each node serves 5 models in 2 versions, as a node mid-rollout does.
	statusMsg := make([][]byte, nNodes)
	statsMsg := func(i int, tick uint64) []byte {
		st := bus.NodeStats{Node: fmt.Sprintf("sim-%04d", i), Started: time.Unix(1700000000, 0).UTC(), Sent: time.Now().UTC()}
		for mdl := 0; mdl < 5; mdl++ {
			for v := 1; v <= 2; v++ {
				lat := make([]uint64, len(bus.LatencyBounds)+1)
				lat[1], lat[3] = 40*tick, tick
				st.Versions = append(st.Versions, bus.VersionStats{Model: fmt.Sprintf("model-%d", mdl), Version: fmt.Sprint(v),
					Requests: 41 * tick, Errors: tick / 10, Latency: lat})
			}
		}
		b, _ := json.Marshal(st)
		return b
	}
	for i := 0; i < nNodes; i++ {
		s := bus.NodeStatus{Node: fmt.Sprintf("sim-%04d", i), Role: "edge", Region: regions[i%len(regions)].name,
			Lat: regions[i%len(regions)].lat, Lon: regions[i%len(regions)].lon, HasLoc: true, HTTPURL: fmt.Sprintf("http://10.0.%d.%d:8000", i/250, i%250),
			Sent: time.Now().UTC()}
		for mdl := 0; mdl < 5; mdl++ {
			for v := 1; v <= 2; v++ {
				s.Models = append(s.Models, bus.ModelStatus{Model: fmt.Sprintf("model-%d", mdl), Version: fmt.Sprint(v), State: node.StateReady})
			}
		}
		statusMsg[i], _ = json.Marshal(s)
	}
	sample := statsMsg(0, 1)
	b.Logf("%d nodes; messages of %d (status) and %d (stats) bytes", nNodes, len(statusMsg[0]), len(sample))

	for it := 0; it < b.N; it++ {
		// Paced: every node once a second, spread over the second.
		before := m.c.IngestStats()
		start := time.Now()
		seconds := int(ingestWindow.Seconds())
		maxPending := 0
		for sec := 0; sec < seconds; sec++ {
			tickStart := start.Add(time.Duration(sec) * time.Second)
			for i := 0; i < nNodes; i++ {
				due := tickStart.Add(time.Duration(i) * time.Second / time.Duration(nNodes))
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				pub.Publish(names.StatusSubject(fmt.Sprintf("sim-%04d", i)), statusMsg[i])
				pub.Publish(names.StatsSubject(fmt.Sprintf("sim-%04d", i)), statsMsg(i, uint64(it*seconds+sec+1)))
				if i%100 == 0 {
					maxPending = max(maxPending, m.c.IngestStats().Pending)
				}
			}
		}
		pub.Flush()
		sent := uint64(2 * nNodes * seconds)
		waitFor(b, 30*time.Second, "the ingest to catch up", func() (bool, string) {
			s := m.c.IngestStats()
			return s.Messages-before.Messages >= sent, fmt.Sprint(s)
		})
		elapsed := time.Since(start)
		after := m.c.IngestStats()
		busy := after.Busy - before.Busy
		frac := busy.Seconds() / elapsed.Seconds()
		b.Logf("paced: %d messages in %v (%d/s); ingest busy %v = %.1f%% of the time; max pending %d; invalid %d; headroom %.0fx",
			sent, elapsed.Round(time.Millisecond), int(float64(sent)/elapsed.Seconds()), busy.Round(time.Millisecond), 100*frac,
			maxPending, after.Invalid-before.Invalid, 1/frac)
		b.ReportMetric(1/frac, "headroom-x")
		b.ReportMetric(float64(maxPending), "max-pending")

		// Burst: as fast as the publisher goes, measuring the drain rate.
		before = m.c.IngestStats()
		start = time.Now()
		const rounds = 5
		for r := 0; r < rounds; r++ {
			for i := 0; i < nNodes; i++ {
				pub.Publish(names.StatusSubject(fmt.Sprintf("sim-%04d", i)), statusMsg[i])
				pub.Publish(names.StatsSubject(fmt.Sprintf("sim-%04d", i)), statsMsg(i, uint64(1000+r)))
			}
		}
		pub.Flush()
		burst := uint64(2 * nNodes * rounds)
		waitFor(b, 60*time.Second, "the burst to drain", func() (bool, string) {
			s := m.c.IngestStats()
			return s.Messages-before.Messages >= burst, fmt.Sprint(s)
		})
		el := time.Since(start)
		rate := float64(burst) / el.Seconds()
		b.Logf("burst: %d messages drained in %v: %.0f messages/s = %.1fx the %d messages/s of %d nodes",
			burst, el.Round(time.Millisecond), rate, rate/float64(2*nNodes), 2*nNodes, nNodes)
		b.ReportMetric(rate, "msgs/s")
	}
	b.ReportMetric(0, "ns/op")
}
