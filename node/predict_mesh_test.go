package node_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/petrel-mesh/petrel/models/wasm/wasmtest"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/client"
)

// TestMeshPredictForwarding: a mesh node that does not serve a model
// forwards /predict, body as it came, to the peer that does, and relays
// its answer; a model nobody serves is still 404; PETREL-FORWARD of
// /predict from a client outside the mesh is refused.
func TestMeshPredictForwarding(t *testing.T) {
	features := wasmtest.BuildExample(t, "features")
	topk := wasmtest.BuildExample(t, "topk")
	l := newMeshLab(t)
	rs := newRepo(t)
	rs.transformModel("iris", 7, features, topk)
	serving := l.start("edge-1", rs, nil, nil)
	empty := l.start("edge-0", nil, []string{serving.GossipAddr()}, nil)
	waitMesh(t, serving, empty)

	body, _ := json.Marshal(map[string]any{"features": map[string]float32{
		"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}})
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	direct := serving.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/iris/predict", body, hdr)
	if direct.status != http.StatusOK {
		t.Fatalf("direct: %d %s", direct.status, direct.body)
	}
	for _, path := range []string{"/v2/models/iris/predict", "/v2/models/iris/versions/1/predict"} {
		rep := empty.raw(t, client.HTTP1).do(t, http.MethodPost, path, body, hdr)
		if rep.status != http.StatusOK || rep.header.Get(node.HeaderServedBy) != "edge-1" || rep.header.Get(node.HeaderForwardedBy) != "edge-0" {
			t.Fatalf("%s via edge-0: status %d, served by %q, forwarded by %q: %s", path, rep.status,
				rep.header.Get(node.HeaderServedBy), rep.header.Get(node.HeaderForwardedBy), rep.body)
		}
		if !bytes.Equal(rep.body, direct.body) {
			t.Errorf("%s via edge-0: %s, served directly: %s", path, rep.body, direct.body)
		}
	}
	// The serving node's errors come back as they are (here: its post
	// transform refusing the Accept type).
	bad := empty.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/iris/predict", body, map[string]string{"Content-Type": "application/json", "Accept": "image/png"})
	wantError(t, bad, http.StatusBadRequest, "post transform refused")
	// Nobody serves it.
	rep := empty.raw(t, client.HTTP1).do(t, http.MethodPost, "/v2/models/nope/predict", body, hdr)
	wantError(t, rep, http.StatusNotFound)
	// PETREL-FORWARD is for mesh peers only.
	rep = serving.raw(t, client.HTTP1).do(t, node.MethodForward, "/v2/models/iris/predict", body, hdr)
	wantError(t, rep, http.StatusForbidden)
}
