package bus

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestUpdateRoundTrip(t *testing.T) {
	h := UpdateHeader{Round: "r1", Node: "edge-1", BaseVersion: "3", Samples: 42, Loss: 0.5}
	delta := []float32{1, -2.5, 0, 3e-7}
	b, err := EncodeUpdate(h, delta)
	if err != nil {
		t.Fatal(err)
	}
	gh, gd, err := DecodeUpdate(b)
	if err != nil {
		t.Fatal(err)
	}
	if gh.Node != "edge-1" || gh.NumParams != 4 || gh.Samples != 42 {
		t.Fatalf("header %+v", gh)
	}
	for i := range delta {
		if gd[i] != delta[i] {
			t.Fatalf("delta %v", gd)
		}
	}
	// Refusals.
	nan := append([]byte(nil), b...)
	copy(nan[len(nan)-4:], []byte{0, 0, 0xc0, 0x7f})
	for name, msg := range map[string][]byte{
		"empty":     nil,
		"short":     b[:3],
		"truncated": b[:len(b)-1],
		"nan":       nan,
		"huge hl":   {0xff, 0xff, 0xff, 0xff},
	} {
		if _, _, err := DecodeUpdate(msg); !errors.Is(err, ErrBadUpdate) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := EncodeUpdate(h, make([]float32, MaxUpdateBytes/4)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized update: %v", err)
	}
	_ = math.NaN
}

func TestRoundStartValidate(t *testing.T) {
	ok := RoundStart{Round: "r1", Model: "m", BaseVersion: "1", BaseDigest: "sha256:" + strings.Repeat("a", 64), NumParams: 10,
		Clients: []string{"a", "b"}, Deadline: time.Now(), LR: 0.1, BatchSize: 32, Epochs: 1, MaxSamples: 100}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*RoundStart){
		"round":   func(r *RoundStart) { r.Round = "a.b" },
		"clients": func(r *RoundStart) { r.Clients = []string{"a", "a"} },
		"lr":      func(r *RoundStart) { r.LR = 0 },
		"params":  func(r *RoundStart) { r.NumParams = 0 },
		"clip":    func(r *RoundStart) { r.Clip = math.Inf(1) },
	} {
		r := ok
		r.Clients = append([]string(nil), ok.Clients...)
		mut(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeUpdate(f *testing.F) {
	b, _ := EncodeUpdate(UpdateHeader{Round: "r1", Node: "n", BaseVersion: "1", Samples: 1}, []float32{1, 2})
	f.Add(b)
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, d, err := DecodeUpdate(data)
		if err != nil {
			return
		}
		if len(d) != h.NumParams {
			t.Fatalf("decoded %d params, header says %d", len(d), h.NumParams)
		}
		for _, x := range d {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatal("non-finite parameter decoded")
			}
		}
	})
}
