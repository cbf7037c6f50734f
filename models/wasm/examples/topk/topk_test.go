package main

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
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

// TestAppendScore: scores are within half a millionth of the float32 value
// and as short as strconv's form for the usual probabilities.
func TestAppendScore(t *testing.T) {
	exact := map[float32]string{0.5: "0.5", 0.7: "0.7", 0.25: "0.25", 1: "1", 0.0001: "0.0001", 0.91: "0.91",
		0.123456789: "0.123457", 0.9999999: "1", 0: "0", 2.5: "2.5", 1e-7: "1e-07", -0.5: "-0.5"}
	for s, want := range exact {
		if got := string(appendScore(nil, s)); got != want {
			t.Errorf("appendScore(%v) = %s, want %s", s, got, want)
		}
	}
	for _, s := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		if got := string(appendScore(nil, s)); got != "null" {
			t.Errorf("appendScore(%v) = %s, want null", s, got)
		}
	}
	for i := 0; i <= 100000; i++ {
		s := float32(i) / 100000
		got := string(appendScore(nil, s))
		v, err := strconv.ParseFloat(got, 64)
		if err != nil || math.Abs(v-float64(s)) > 5e-7 {
			t.Fatalf("appendScore(%v) = %s (%v)", s, got, err)
		}
	}
}

func TestAcceptsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"": true, " ": true, "application/json": true, "Application/JSON; charset=utf-8": true,
		"text/html, application/*;q=0.5": true, "*/*": true, "text/html": false, "application/xml": false,
		"text/html,": false, ",": true,
	} {
		if got := acceptsJSON(accept); got != want {
			t.Errorf("acceptsJSON(%q) = %v, want %v", accept, got, want)
		}
	}
}
