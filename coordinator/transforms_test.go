package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/wasm/wasmtest"
)

// pushFiles pushes a version with file parts (model, golden, pre, post)
// and plain fields.
func (m *testMesh) pushFiles(name, ver string, files map[string][]byte, fields map[string]string) (int, string) {
	m.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for part, b := range files {
		fw, _ := mw.CreateFormFile(part, part+".bin")
		fw.Write(b)
	}
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", m.url()+"/v1/models/"+name+"/versions/"+ver, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+pushToken)
	return m.do(req, nil)
}

// irisModel is a 4 -> 8 -> 10 softmax MLP, "input" -> "probabilities",
// which the features and topk examples fit.
func irisModel(t testing.TB, seed uint64) []byte {
	t.Helper()
	b, err := onnx.NewMLP([]int{4, 8, 10}, onnx.Softmax).RandomInit(seed).MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const irisBody = `{"features":{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}}`

func TestPushTransformsGateSyncServe(t *testing.T) {
	m := newTestMesh(t, meshOpts{nodes: 1})
	model := irisModel(t, 3)
	features := wasmtest.BuildExample(t, "features")
	topk := wasmtest.BuildExample(t, "topk")
	golden, _ := json.Marshal(map[string]any{"predict": []map[string]any{
		{"content_type": "application/json", "body": irisBody, "expect_contains": `"predictions"`},
		{"content_type": "application/json", "body": `{"features":{"colour":1}}`, "expect_status": 400},
	}})

	// Push-time rejections, each with its reason.
	for _, tc := range []struct {
		name   string
		files  map[string][]byte
		fields map[string]string
		status int
		want   string
	}{
		{"not wasm", map[string][]byte{"model": model, "pre": []byte("hello")}, nil, 422, "pre transform is invalid"},
		{"bad import", map[string][]byte{"model": model, "pre": wasmtest.BuildExample(t, "badimport")}, nil, 422, "pre transform is invalid"},
		{"bad abi version", map[string][]byte{"model": model, "post": wasmtest.BuildExample(t, "badversion")}, nil, 422, "post transform is invalid"},
		{"predict fails", map[string][]byte{"model": model, "pre": features, "golden": []byte(`{"predict":[{"content_type":"application/json","body":"{\"features\":{\"x\":1}}"}]}`)}, nil, 422, "predict example 0"},
		{"predict without pre", map[string][]byte{"model": model, "post": topk, "golden": golden}, nil, 422, "no pre transform"},
		{"bad grant", map[string][]byte{"model": model, "pre": features}, map[string]string{"grants": "pre=network"}, 400, "unknown grant"},
		{"grant without module", map[string][]byte{"model": model, "pre": features}, map[string]string{"grants": "post=clock"}, 400, "no \\\"post\\\" part"},
	} {
		st, body := m.pushFiles("iris", "1", tc.files, tc.fields)
		if st != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s, want %d containing %q", tc.name, st, body, tc.status, tc.want)
		}
	}

	st, body := m.pushFiles("iris", "1", map[string][]byte{"model": model, "pre": features, "post": topk, "golden": golden}, map[string]string{"grants": "pre=clock,post="})
	if st != 201 {
		t.Fatalf("push with transforms: %d %s", st, body)
	}
	var man models.Manifest
	if st, body := m.api("GET", "/v1/models/iris/versions/1", readToken, nil, &man); st != 200 {
		t.Fatalf("show: %d %s", st, body)
	}
	tr := man.Transforms
	if tr == nil || tr.Pre == nil || tr.Post == nil || tr.Pre.Digest != models.DigestBytes(features) || tr.Post.Digest != models.DigestBytes(topk) ||
		len(tr.Pre.Grants) != 1 || tr.Pre.Grants[0] != "clock" || tr.Pre.Size != int64(len(features)) {
		t.Fatalf("manifest transforms: %+v", tr)
	}

	if st, body := m.api("POST", "/v1/models/iris/deploy", pushToken, coordinator.DeployRequest{Version: "1"}, nil); st != 200 {
		t.Fatalf("deploy: %d %s", st, body)
	}
	n := m.nodes[0]
	var last string
	waitFor(t, 30*time.Second, "predict on the node", func() (bool, string) {
		resp, err := http.Post("http://"+n.Addr()+"/v2/models/iris/predict", "application/json", strings.NewReader(irisBody))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return resp.StatusCode == 200 && strings.Contains(last, `"predictions"`), last
	})

	// Tampered module: the object store holds other bytes under the
	// post transform's digest; the node refuses to compile them.
	model2 := irisModel(t, 4)
	if st, body := m.pushFiles("iris", "2", map[string][]byte{"model": model2, "pre": features, "post": topk}, nil); st != 201 {
		t.Fatalf("push v2: %d %s", st, body)
	}
	// v1 and v2 share the modules; make v3's post unique so that
	// tampering with it leaves v1 intact.
	post3 := appendCustomSection(topk, "petrel-test", []byte("v3"))
	if st, body := m.pushFiles("iris", "3", map[string][]byte{"model": irisModel(t, 5), "pre": features, "post": post3}, nil); st != 201 {
		t.Fatalf("push v3: %d %s", st, body)
	}
	ctx := context.Background()
	name := strings.TrimPrefix(models.DigestBytes(post3), "sha256:")
	art := m.c.Buckets().Artifacts
	if err := art.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := art.PutBytes(ctx, name, topk); err != nil {
		t.Fatal(err)
	}
	if st, body := m.api("POST", "/v1/models/iris/deploy", pushToken, coordinator.DeployRequest{Version: "3"}, nil); st != 200 {
		t.Fatalf("deploy v3: %d %s", st, body)
	}
	waitFor(t, 30*time.Second, "the node refuses the tampered module", func() (bool, string) {
		_, body := m.api("GET", "/v1/nodes", readToken, nil, nil)
		// The object store's read verifies the digest first; the node's
		// own check (node.compileTransforms) is the second line.
		return strings.Contains(body, `"FAILED"`) && strings.Contains(body, "does not match"), body
	})
	resp, err := http.Post("http://"+n.Addr()+"/v2/models/iris/versions/3/predict", "application/json", strings.NewReader(irisBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("tampered version 3 answers %d, want 404 (not installed)", resp.StatusCode)
	}
}

// appendCustomSection appends a custom section (id 0) to a wasm module:
// the module runs the same, its bytes (and digest) differ.
func appendCustomSection(mod []byte, name string, payload []byte) []byte {
	var body []byte
	body = appendULEB(body, uint64(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	out := bytes.Clone(mod)
	out = append(out, 0)
	out = appendULEB(out, uint64(len(body)))
	return append(out, body...)
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
