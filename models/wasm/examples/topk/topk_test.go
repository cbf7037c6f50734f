package main

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

func TestTransform(t *testing.T) {
	data := make([]byte, 0, 16)
	for _, v := range []float32{0.1, float32(math.NaN()), 0.7, 0.2} {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	ts := []guest.Tensor{{Name: "probabilities", DataType: "FP32", Shape: []int64{4}, Data: data}}
	ct, body, err := transform([]string{"a", "b", "c"}, 2, ts, "text/html, application/*;q=0.5")
	if err != nil || ct != "application/json" {
		t.Fatalf("transform: %q %v", ct, err)
	}
	want := `{"predictions":[{"label":"c","score":0.7},{"label":"class_3","score":0.2}]}`
	if string(body) != want {
		t.Fatalf("body %s, want %s", body, want)
	}
	if _, _, err := transform(nil, 2, ts, "text/html"); !errors.Is(err, errClient) {
		t.Fatalf("text/html accept: %v, want a client error", err)
	}
	bad := []guest.Tensor{{Name: "probabilities", DataType: "FP32", Shape: []int64{2, 4}, Data: data}}
	if _, _, err := transform(nil, 2, bad, ""); err == nil || errors.Is(err, errClient) {
		t.Fatalf("shape/data mismatch: %v, want a transform failure", err)
	}
}

// TestDefaults: the link-time defaults are Fashion-MNIST's ten names and
// k = 3; a bad k falls back to 3.
func TestDefaults(t *testing.T) {
	if names := parseLabels(labels); len(names) != 10 || names[9] != "Ankle boot" {
		t.Fatalf("labels %v", names)
	}
	for s, want := range map[string]int{topK: 3, "5": 5, "0": 3, "x": 3} {
		if got := parseK(s); got != want {
			t.Errorf("parseK(%q) = %d, want %d", s, got, want)
		}
	}
}
