package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/georoute"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node"
)

// TestGarbageCollection keeps the last N versions, never one in use, and
// deletes the artifacts of the versions it removes.
func TestGarbageCollection(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 1, mutate: func(c *coordinator.Config) { c.KeepVersions = 2 }})
	digests := map[string]string{}
	for v := 1; v <= 4; v++ {
		b, g := mlpVersion(t, uint64(v))
		digests[fmt.Sprint(v)] = models.DigestBytes(b)
		if st, body := m.push(pushToken, "demand", fmt.Sprint(v), b, g, nil); st != 201 {
			t.Fatalf("push v%d: %d %s", v, st, body)
		}
		if v == 1 {
			m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
		}
	}
	var det coordinator.ModelDetail
	m.api("GET", "/v1/models/demand", readToken, nil, &det)
	var got []string
	for _, v := range det.Versions {
		got = append(got, v.Version)
	}
	if strings.Join(got, ",") != "1,4" {
		t.Fatalf("kept versions %v, want 1 (serving) and 4 (newest)", got)
	}
	ctx := context.Background()
	for v, want := range map[string]bool{"1": true, "2": false, "3": false, "4": true} {
		ok, err := m.c.Buckets().ArtifactExists(ctx, digests[v])
		if err != nil || ok != want {
			t.Errorf("artifact of v%s exists=%v (%v), want %v", v, ok, err, want)
		}
	}
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?kind=rm&actor=gc", readToken, nil, &evs)
	if len(evs) != 2 {
		t.Fatalf("gc audit events: %+v", evs)
	}
}

// TestPlacementAndPeerFirstSync: placement limits a model to a region and
// the coordinator reports a missed replica minimum; when placement widens,
// the other nodes fetch the artifact from the mesh peer that has it, not
// from the object store.
func TestPlacementAndPeerFirstSync(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 3, mesh: true})
	v1, g1 := mlpVersion(t, 1)
	m.push(pushToken, "demand", "1", v1, g1, nil)
	if st, body := m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1",
		Placement: &bus.Placement{Regions: []string{"eu-west"}, MinReplicasPerRegion: 2}}, nil); st != 200 {
		t.Fatalf("deploy: %d %s", st, body)
	}
	var det coordinator.ModelDetail
	waitFor(t, 20*time.Second, "eu-west serving", func() (bool, string) {
		m.api("GET", "/v1/models/demand", readToken, nil, &det)
		return det.Replicas["eu-west"] == 1, fmt.Sprint(det.Replicas)
	})
	if len(det.Warnings) != 1 || !strings.Contains(det.Warnings[0], `"eu-west" has 1 of the 2 replicas`) {
		t.Fatalf("warnings: %v", det.Warnings)
	}
	for _, ns := range det.Nodes {
		if ns.Node != "node-0" {
			t.Fatalf("%s loaded a model placed in eu-west only: %+v", ns.Node, ns)
		}
	}
	if got := syncs(t, m.nodes[0], "object_store"); got != 1 {
		t.Fatalf("node-0 object store syncs: %d", got)
	}
	// The mesh learns that node-0 holds it.
	time.Sleep(time.Second)
	if st, body := m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1", Placement: &bus.Placement{}}, nil); st != 200 {
		t.Fatalf("widen: %d %s", st, body)
	}
	m.readyEverywhere("demand", "1", 30*time.Second)
	for _, n := range m.nodes[1:] {
		if p, o := syncs(t, n, "peer"), syncs(t, n, "object_store"); p != 1 || o != 0 {
			t.Errorf("%s: %d syncs from a peer, %d from the object store; want the peer", n.Addr(), p, o)
		}
	}
}

var syncRE = regexp.MustCompile(`petrel_model_syncs_total\{source="([a-z_]+)"\} (\d+)`)

func syncs(t testing.TB, n *node.Node, source string) int {
	resp, err := http.Get("http://" + n.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, mm := range syncRE.FindAllStringSubmatch(string(b), -1) {
		if mm[1] == source {
			var v int
			fmt.Sscan(mm[2], &v)
			return v
		}
	}
	return 0
}

// TestMalformedNATSMessages: garbage on the status and statistics
// subjects is counted and dropped; the coordinator carries on.
func TestMalformedNATSMessages(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 1})
	nc, err := nats.Connect(m.c.NATSURL(), nats.UserInfo("node", "node-password"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n := bus.Names{}
	bad := map[string][]byte{
		n.StatusSubject("x"):     []byte("not json"),
		n.StatusSubject("y"):     []byte(`{"node":"someone-else","role":"edge","http_url":"http://a"}`),
		n.StatusSubject("z"):     []byte(`{"node":"z","role":"edge","lat":400,"has_loc":true}`),
		n.StatsSubject("x"):      []byte(`{"node":"x","versions":[{"model":"m","version":"1","requests":1,"errors":5,"latency":[1]}]}`),
		n.StatsSubject("w"):      []byte(strings.Repeat("[", 1<<19)),
		n.StatsSubject("a.b.c"):  []byte(`{}`),
		n.StatusSubject("q.r.s"): nil,
	}
	before := m.c.IngestStats()
	for subj, b := range bad {
		nc.Publish(subj, b)
	}
	nc.Flush()
	waitFor(t, 5*time.Second, "the garbage to be counted", func() (bool, string) {
		s := m.c.IngestStats()
		return s.Invalid-before.Invalid == uint64(len(bad)), fmt.Sprint(s)
	})
	for _, nv := range m.c.Nodes() {
		if nv.Node != "node-0" {
			t.Fatalf("a malformed status became node %+v", nv)
		}
	}
	// Still working.
	b, g := mlpVersion(t, 1)
	if st, body := m.push(pushToken, "demand", "1", b, g, nil); st != 201 {
		t.Fatalf("push after garbage: %d %s", st, body)
	}
}

// TestRouteByClientAddress maps the client's address to a region through
// the CIDR table when the query gives no location.
func TestRouteByClientAddress(t *testing.T) {
	table, err := georoute.ParseCIDRTable(strings.NewReader("# loopback clients are in Singapore\n127.0.0.0/8 ap-south 1.35,103.82\n::1/128 us-east\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := newTestMesh(t, meshOpts{nodes: 3, mutate: func(c *coordinator.Config) { c.CIDRs = table }})
	b, g := mlpVersion(t, 1)
	m.push(pushToken, "demand", "1", b, g, nil)
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	var ans coordinator.RouteAnswer
	if st, body := m.api("GET", "/v1/route?model=demand", readToken, nil, &ans); st != 200 {
		t.Fatalf("route: %d %s", st, body)
	}
	if ans.Client.From != "address" || ans.Client.Region != "ap-south" || ans.Candidates[0].Node != "node-2" {
		t.Fatalf("route by address: %+v", ans)
	}
}
