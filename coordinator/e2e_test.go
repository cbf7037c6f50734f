package coordinator_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
)

// TestPushValidateSyncServe: a pushed version is validated, signed,
// stored, synced to every node and served; versions that fail the gate
// never reach the registry, and the push says why.
func TestPushValidateSyncServe(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 3})
	v1, g1 := mlpVersion(t, 1)

	// Access: no token, a bad token, a token without the scope.
	if st, body := m.push("", "demand", "1", v1, g1, nil); st != 401 || !strings.Contains(body, "missing bearer token") {
		t.Fatalf("push without a token: %d %s", st, body)
	}
	if st, _ := m.push("wrong-token-0123456789", "demand", "1", v1, g1, nil); st != 401 {
		t.Fatalf("push with a bad token: %d", st)
	}
	if st, body := m.push(readToken, "demand", "1", v1, g1, nil); st != 403 || !strings.Contains(body, `lacks the \"push\" scope`) {
		t.Fatalf("push with a read token: %d %s", st, body)
	}

	if st, body := m.push(pushToken, "demand", "1", v1, g1, map[string]string{"labels": "team=forecast"}); st != 201 {
		t.Fatalf("push v1: %d %s", st, body)
	}
	var man models.Manifest
	if st, body := m.api("GET", "/v1/models/demand/versions/1", readToken, nil, &man); st != 200 {
		t.Fatalf("show v1: %d %s", st, body)
	}
	if man.Digest != models.DigestBytes(v1) || man.Lineage == nil || man.Lineage.PushedBy != "ci" || man.Lineage.Source != "upload" || man.Labels["team"] != "forecast" {
		t.Fatalf("manifest: %+v lineage %+v", man, man.Lineage)
	}

	// Bad versions: truncated file, wrong golden outputs, breaking change.
	for _, tc := range []struct {
		name, ver string
		model     []byte
		golden    []models.Golden
		extra     map[string]string
		status    int
		want      string
	}{
		{"truncated", "2", v1[:len(v1)/2], nil, nil, 422, "failed validation"},
		{"not onnx", "2", []byte("hello"), nil, nil, 422, "failed validation"},
		{"golden mismatch", "2", mustMLP(t, 7), g1, nil, 422, "golden"},
		{"breaking", "2", mustMLP(t, 3, 32, 8, 16), nil, nil, 422, "breaking"},
		{"bad version name", "../x", v1, nil, nil, 404, ""},
		{"exists", "1", v1, nil, nil, 409, "already exists"},
		{"unknown part", "2", v1, nil, map[string]string{"color": "red"}, 400, "unknown part"},
	} {
		st, body := m.push(pushToken, "demand", tc.ver, tc.model, tc.golden, tc.extra)
		if st != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s, want %d containing %q", tc.name, st, body, tc.status, tc.want)
		}
	}
	if st, _ := m.api("GET", "/v1/models/demand/versions/2", readToken, nil, nil); st != 404 {
		t.Fatalf("a rejected version is in the registry: %d", st)
	}
	// A breaking change goes in when the pusher says so.
	if st, body := m.push(pushToken, "demand", "2", mustMLP(t, 3, 32, 8, 16), nil, map[string]string{"allow_breaking": "true"}); st != 201 {
		t.Fatalf("breaking push with allow_breaking: %d %s", st, body)
	}

	// Deploy v1 and serve it from every node.
	if st, body := m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil); st != 200 {
		t.Fatalf("deploy: %d %s", st, body)
	}
	m.readyEverywhere("demand", "1", 30*time.Second)
	for _, n := range m.nodes {
		if st, ver := infer(t, n, "demand", "", 0.25); st != 200 || ver != "1" {
			t.Fatalf("%s: infer: %d %s", n.Addr(), st, ver)
		}
	}
	var list []coordinator.ModelSummary
	if st, _ := m.api("GET", "/v1/models", readToken, nil, &list); st != 200 || len(list) != 1 || list[0].Latest != "2" || len(list[0].Versions) != 2 {
		t.Fatalf("model list: %d %+v", st, list)
	}
	// In use: v1 cannot be removed; v2 can, by an admin only.
	if st, body := m.api("DELETE", "/v1/models/demand/versions/1", adminToken, nil, nil); st != 409 || !strings.Contains(body, "serving") {
		t.Fatalf("rm a serving version: %d %s", st, body)
	}
	if st, _ := m.api("DELETE", "/v1/models/demand/versions/2", pushToken, nil, nil); st != 403 {
		t.Fatalf("rm with a push token: %d", st)
	}
	if st, body := m.api("DELETE", "/v1/models/demand/versions/2", adminToken, nil, nil); st != 200 {
		t.Fatalf("rm v2: %d %s", st, body)
	}
	// The audit trail has who did what.
	var evs []bus.AuditEvent
	if st, body := m.api("GET", "/v1/audit?model=demand", readToken, nil, &evs); st != 200 {
		t.Fatalf("audit: %d %s", st, body)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Kind+"/"+e.Actor]++
	}
	if kinds["push/ci"] != 2 || kinds["deploy/ci"] != 1 || kinds["rm/alice"] != 1 || kinds["validate/ci"] < 4 {
		t.Fatalf("audit kinds: %v", kinds)
	}
}

func mustMLP(t testing.TB, seed uint64, sizes ...int) []byte {
	b, _ := mlpVersion(t, seed, sizes...)
	return b
}

// TestCanaryRolledBackAutomatically: a canary that fails requests its
// predecessor served is rolled back by the coordinator while the old
// version keeps serving.
func TestCanaryRolledBackAutomatically(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 3})
	v1, g1 := mlpVersion(t, 1)
	if st, body := m.push(pushToken, "demand", "1", v1, g1, nil); st != 201 {
		t.Fatalf("push v1: %d %s", st, body)
	}
	var man models.Manifest
	m.api("GET", "/v1/models/demand/versions/1", readToken, nil, &man)
	if st, body := m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil); st != 200 {
		t.Fatalf("deploy: %d %s", st, body)
	}
	m.readyEverywhere("demand", "1", 30*time.Second)
	bad := faultyVersion(t, man.Signature.Outputs[0].Name)
	if st, body := m.push(pushToken, "demand", "2", bad, nil, nil); st != 201 {
		t.Fatalf("push the faulty v2 (it passes the gate): %d %s", st, body)
	}
	// Requests whose first value is 3 break v2 (and not v1).
	l := startLoad(t, m, "demand", 3, 4)
	defer l.halt()
	var ro rollout.Rollout
	if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{
		Version: "2", Steps: []float64{20, 50, 100}, Interval: "30s", MaxErrorRate: 0.05, MinRequests: 10}, &ro); st != 201 {
		t.Fatalf("start rollout: %d %s", st, body)
	}
	// A second rollout of the same model conflicts.
	if st, _ := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{Version: "1", Steps: []float64{100}, Interval: "1s"}, nil); st != 409 {
		t.Fatalf("concurrent rollout: %d", st)
	}
	waitFor(t, 60*time.Second, "the automatic rollback", func() (bool, string) {
		var r rollout.Rollout
		m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
		return r.State == rollout.StateRolledBack, string(r.State) + " " + r.Reason
	})
	var r rollout.Rollout
	m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
	if !strings.Contains(r.Reason, "error rate") {
		t.Fatalf("rollback reason: %q", r.Reason)
	}
	var det coordinator.ModelDetail
	m.api("GET", "/v1/models/demand", readToken, nil, &det)
	if det.Desired == nil || len(det.Desired.Versions) != 1 || det.Desired.Versions[0].Version != "1" || det.Desired.Versions[0].Weight != 100 {
		t.Fatalf("desired state after rollback: %+v", det.Desired)
	}
	// Once the nodes have the new split, v1 answers everything.
	waitFor(t, 10*time.Second, "v2 retired on every node", func() (bool, string) {
		for _, n := range m.nodes {
			for i := 0; i < 20; i++ {
				if st, ver := infer(t, n, "demand", "k"+string(rune('a'+i)), 3); st != 200 || ver != "1" {
					return false, ver
				}
			}
		}
		return true, ""
	})
	statuses, _ := l.snapshot()
	t.Logf("requests during the rollout by status: %v (the 422s are the canary's share before the rollback)", statuses)
	if statuses[200] == 0 || statuses[422] == 0 {
		t.Fatalf("statuses %v: want both v1's successes and the canary's failures", statuses)
	}
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?model=demand&kind=rollback", readToken, nil, &evs)
	if len(evs) != 1 || evs[0].Actor != "coordinator" || !strings.Contains(evs[0].Detail, "error rate") {
		t.Fatalf("rollback audit: %+v", evs)
	}
}

// TestRolloutPromotesThenManualRollback: a good canary goes through its
// steps to 100 %, sticky by request key; then a manual rollback to the
// kept version moves all traffic back.
func TestRolloutPromotesThenManualRollback(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 3})
	v1, g1 := mlpVersion(t, 1)
	v2, g2 := mlpVersion(t, 2)
	m.push(pushToken, "demand", "1", v1, g1, nil)
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	if st, body := m.push(pushToken, "demand", "2", v2, g2, nil); st != 201 {
		t.Fatalf("push v2: %d %s", st, body)
	}
	// Bad specs are refused with the reason.
	for _, bad := range []coordinator.RolloutRequest{
		{Version: "2", Steps: []float64{10, 5, 100}, Interval: "1s"},
		{Version: "2", Steps: []float64{10, 50}, Interval: "1s"},
		{Version: "2", Steps: []float64{10, 100}, Interval: "1s", MaxErrorRate: 2},
		{Version: "2", Steps: []float64{10, 100}, Interval: "soon"},
	} {
		if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, bad, nil); st != 400 {
			t.Errorf("bad spec %+v: %d %s", bad, st, body)
		}
	}
	if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{Version: "9", Steps: []float64{100}, Interval: "1s"}, nil); st != 404 {
		t.Errorf("unknown version: %d %s", st, body)
	}
	l := startLoad(t, m, "demand", 0.25, 3)
	if st, body := m.api("POST", "/v1/rollouts/demand", pushToken, coordinator.RolloutRequest{
		Version: "2", Steps: []float64{30, 100}, Interval: "1s", MaxErrorRate: 0.01, MaxP99: "2s", MinRequests: 10}, nil); st != 201 {
		t.Fatalf("start: %d %s", st, body)
	}
	// Midway: a key keeps its version.
	waitFor(t, 20*time.Second, "both versions serving", func() (bool, string) {
		_, byVer := l.snapshot()
		return byVer["1"] > 0 && byVer["2"] > 0, ""
	})
	var r rollout.Rollout
	m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
	if r.State == rollout.StateRunning {
		first := map[string]string{}
		for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			_, ver := infer(t, m.nodes[0], "demand", key, 0.25)
			first[key] = ver
		}
		for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			for _, n := range m.nodes {
				if _, ver := infer(t, n, "demand", key, 0.25); ver != first[key] {
					// The split may have moved a step meanwhile; only a
					// move from the candidate back would be wrong.
					if first[key] == "2" {
						t.Fatalf("key %q left the candidate for %s", key, ver)
					}
				}
			}
		}
	}
	waitFor(t, 60*time.Second, "promotion", func() (bool, string) {
		var r rollout.Rollout
		m.api("GET", "/v1/rollouts/demand", readToken, nil, &r)
		return r.State == rollout.StatePromoted, string(r.State) + " " + r.Reason
	})
	l.halt()
	statuses, byVer := l.snapshot()
	t.Logf("during the rollout: statuses %v, versions %v", statuses, byVer)
	for st, n := range statuses {
		if st != 200 {
			t.Errorf("%d requests answered %d during a good rollout", n, st)
		}
	}
	waitFor(t, 10*time.Second, "v2 everywhere", func() (bool, string) {
		for _, n := range m.nodes {
			if _, ver := infer(t, n, "demand", "z", 0.25); ver != "2" {
				return false, ver
			}
		}
		return true, ""
	})
	// Manual rollback to the kept v1.
	if st, body := m.api("POST", "/v1/rollouts/demand/rollback", adminToken, map[string]string{"version": "1"}, nil); st != 200 {
		t.Fatalf("rollback to v1: %d %s", st, body)
	}
	waitFor(t, 10*time.Second, "v1 everywhere again", func() (bool, string) {
		for _, n := range m.nodes {
			if _, ver := infer(t, n, "demand", "z", 0.25); ver != "1" {
				return false, ver
			}
		}
		return true, ""
	})
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?model=demand", readToken, nil, &evs)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	got := strings.Join(kinds, ",")
	for _, want := range []string{"rollout.start", "rollout.step", "promote", "rollback"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit %s lacks %s", got, want)
		}
	}
}

// TestShadowReport mirrors traffic to a candidate and reports how far its
// outputs are from the serving version's.
func TestShadowReport(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 2})
	v1, g1 := mlpVersion(t, 1)
	v2, g2 := mlpVersion(t, 2)
	m.push(pushToken, "demand", "1", v1, g1, nil)
	m.push(pushToken, "demand", "2", v2, g2, nil)
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	if st, body := m.api("POST", "/v1/models/demand/shadow", pushToken, coordinator.ShadowRequest{Version: "2", Share: 50}, nil); st != 200 {
		t.Fatalf("shadow: %d %s", st, body)
	}
	if st, _ := m.api("POST", "/v1/models/demand/shadow", pushToken, coordinator.ShadowRequest{Version: "1", Share: 50}, nil); st != 409 {
		t.Fatalf("shadowing the serving version: %d", st)
	}
	m.readyEverywhere("demand", "2", 30*time.Second)
	l := startLoad(t, m, "demand", 0.25, 2)
	var rep []coordinator.VersionTotals
	waitFor(t, 30*time.Second, "a shadow report", func() (bool, string) {
		m.api("GET", "/v1/models/demand/shadow", readToken, nil, &rep)
		return len(rep) == 1 && rep[0].Shadow != nil && rep[0].Shadow.Compared > 100, ""
	})
	l.halt()
	// The nodes' next reports carry the last mirrored requests.
	waitFor(t, 10*time.Second, "the shadow report to settle", func() (bool, string) {
		prev := rep[0].Shadow.Mirrored
		time.Sleep(600 * time.Millisecond)
		m.api("GET", "/v1/models/demand/shadow", readToken, nil, &rep)
		return rep[0].Shadow.Mirrored == prev, ""
	})
	statuses, byVer := l.snapshot()
	if byVer["2"] != 0 || statuses[200] == 0 {
		t.Fatalf("clients saw the shadow: %v %v", statuses, byVer)
	}
	s := rep[0].Shadow
	t.Logf("shadow: %+v mean abs diff %g", *s, rep[0].MeanAbsDiff)
	if s.Against != "1" || s.Mirrored == 0 || s.Failed != 0 || rep[0].MeanAbsDiff <= 0 || s.MaxAbsDiff <= 0 || s.MaxAbsDiff > 1 {
		t.Fatalf("shadow report: %+v", rep[0])
	}
	// Roughly half the requests are mirrored.
	frac := float64(s.Mirrored) / float64(statuses[200])
	if frac < 0.3 || frac > 0.7 {
		t.Fatalf("mirrored %d of %d requests, want about half", s.Mirrored, statuses[200])
	}
}

// TestNodesServeWithoutCoordinator: with the coordinator and its embedded
// NATS gone, nodes keep serving what they have; when it is back, they pick
// up new desired state.
func TestNodesServeWithoutCoordinator(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 2, mutate: func(c *coordinator.Config) { c.Embedded.Port = freePort(t) }})
	v1, g1 := mlpVersion(t, 1)
	m.push(pushToken, "demand", "1", v1, g1, nil)
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	m.c.Close()
	for i := 0; i < 20; i++ {
		for _, n := range m.nodes {
			if st, ver := infer(t, n, "demand", "", 0.25); st != 200 || ver != "1" {
				t.Fatalf("with NATS down: %d %s", st, ver)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Same data directory, same port: the state is still there.
	m.startCoordinator()
	v2, g2 := mlpVersion(t, 2)
	if st, body := m.push(pushToken, "demand", "2", v2, g2, nil); st != 201 {
		t.Fatalf("push after restart: %d %s", st, body)
	}
	if st, body := m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "2"}, nil); st != 200 {
		t.Fatalf("deploy after restart: %d %s", st, body)
	}
	m.readyEverywhere("demand", "2", 30*time.Second)
	for _, n := range m.nodes {
		if st, ver := infer(t, n, "demand", "", 0.25); st != 200 || ver != "2" {
			t.Fatalf("after the restart: %d %s", st, ver)
		}
	}
}

// TestRouteAPI ranks nodes by distance and readiness, and redirects.
func TestRouteAPI(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 3})
	v1, g1 := mlpVersion(t, 1)
	m.push(pushToken, "demand", "1", v1, g1, nil)
	m.api("POST", "/v1/models/demand/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil)
	m.readyEverywhere("demand", "1", 30*time.Second)
	var ans coordinator.RouteAnswer
	if st, body := m.api("GET", "/v1/route?model=demand&lat=1.3&lon=103.8", readToken, nil, &ans); st != 200 {
		t.Fatalf("route: %d %s", st, body)
	}
	if len(ans.Candidates) != 3 || ans.Candidates[0].Node != "node-2" || ans.Candidates[0].Region != "ap-south" {
		t.Fatalf("route from Singapore: %+v", ans.Candidates)
	}
	if st, _ := m.api("GET", "/v1/route?model=demand&region=us-east", readToken, nil, &ans); st != 200 || ans.Candidates[0].Node != "node-1" {
		t.Fatalf("route by region: %+v", ans.Candidates)
	}
	for _, q := range []string{"model=demand&lat=100&lon=0", "model=demand&lat=1", "model=", "model=demand&limit=0"} {
		if st, body := m.api("GET", "/v1/route?"+q, readToken, nil, nil); st != 400 {
			t.Errorf("route ?%s: %d %s", q, st, body)
		}
	}
	if st, _ := m.api("GET", "/v1/route?model=unknown", readToken, nil, &ans); st != 200 || len(ans.Candidates) != 0 {
		t.Fatalf("route for an unknown model: %+v", ans)
	}
	// The redirect form keeps POST and its body (307).
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", m.c.URL()+"/v2/models/demand/infer?lat=40.7&lon=-74", strings.NewReader("{}"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "http://"+m.nodes[1].Addr()+"/v2/models/demand/infer" {
		t.Fatalf("redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}
