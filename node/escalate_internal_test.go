package node

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
)

func fp32Tensor(shape []int64, v ...float32) models.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return models.Tensor{Name: "p", DataType: models.FP32, Shape: shape, Data: b}
}

func TestNeedsEscalation(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name        string
		t           models.Tensor
		maxP, ent   float64
		want, isErr bool
	}{
		{"sure probabilities", fp32Tensor([]int64{1, 3}, 0.9, 0.05, 0.05), 0.8, 0, false, false},
		{"unsure probabilities", fp32Tensor([]int64{1, 3}, 0.5, 0.3, 0.2), 0.8, 0, true, false},
		{"one unsure row", fp32Tensor([]int64{2, 2}, 0.99, 0.01, 0.6, 0.4), 0.8, 0, true, false},
		{"rank one", fp32Tensor([]int64{2}, 0.6, 0.4), 0.8, 0, true, false},
		{"logits sure", fp32Tensor([]int64{1, 2}, 10, 0), 0.8, 0, false, false},
		{"logits unsure", fp32Tensor([]int64{1, 2}, 0.1, 0), 0.8, 0, true, false},
		{"entropy high", fp32Tensor([]int64{1, 2}, 0.5, 0.5), 0, 0.6, true, false},   // ln 2 = 0.69
		{"entropy low", fp32Tensor([]int64{1, 2}, 0.99, 0.01), 0, 0.6, false, false}, // 0.056
		{"nan", fp32Tensor([]int64{1, 2}, nan, 0), 0.8, 0, true, false},
		{"empty batch", fp32Tensor([]int64{0, 2}), 0.8, 0, false, false},
		{"short data", models.Tensor{DataType: models.FP32, Shape: []int64{2, 2}, Data: make([]byte, 8)}, 0.8, 0, false, true},
		{"rank three", fp32Tensor([]int64{1, 1, 2}, 0.5, 0.5), 0.8, 0, false, true},
		{"int", models.Tensor{DataType: models.Int64, Shape: []int64{1, 1}, Data: make([]byte, 8)}, 0.8, 0, false, true},
		{"negative dim", fp32Tensor([]int64{-1, 2}), 0.8, 0, false, true},
	}
	for _, c := range cases {
		got, err := needsEscalation(c.t, c.maxP, c.ent)
		if (err != nil) != c.isErr || got != c.want {
			t.Errorf("%s: %v, %v; want %v, error %v", c.name, got, err, c.want, c.isErr)
		}
	}
}

func TestModelConfigEscalationAndPipeline(t *testing.T) {
	cases := []struct {
		cfg, err string
	}{
		{`{"escalation": {"to": "c", "max_prob_below": 0.8, "timeout": "200ms"}}`, ""},
		{`{"escalation": {"to": "c", "entropy_above": 1.2, "output": "probs"}}`, ""},
		{`{"escalation": {"to": "c"}}`, "nothing would ever escalate"},
		{`{"escalation": {"to": "", "max_prob_below": 0.8}}`, "to"},
		{`{"escalation": {"to": "a b", "max_prob_below": 0.8}}`, "to"},
		{`{"escalation": {"to": "c", "max_prob_below": 1.5}}`, "max_prob_below"},
		{`{"escalation": {"to": "c", "max_prob_below": -0.1}}`, "max_prob_below"},
		{`{"escalation": {"to": "c", "entropy_above": -1}}`, "entropy_above"},
		{`{"escalation": {"to": "c", "max_prob_below": 0.5, "timeout": "soon"}}`, "timeout"},
		{`{"escalation": {"to": "c", "max_prob_below": 0.5, "timeout": "2h"}}`, "timeout"},
		{`{"escalation": {"to": "c", "max_prob_below": 0.5, "timout": "1s"}}`, "unknown field"},
		{`{"pipeline": {"steps": [{"model": "a"}, {"model": "b", "version": "2"}]}}`, ""},
		{`{"pipeline": {"steps": [{"model": "a"}]}}`, "want 2..16"},
		{`{"pipeline": {"steps": []}}`, "want 2..16"},
		{`{"pipeline": {"steps": [{"model": "a"}, {"model": "../b"}]}}`, "step 2"},
		{`{"pipeline": {"steps": [{"model": "a"}, {"model": "b", "version": "x y"}]}}`, "version"},
	}
	for _, c := range cases {
		mc, err := parseModelConfig([]byte(c.cfg))
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.cfg, err)
			}
			if mc.Escalation != nil && mc.Escalation.callTimeout() <= 0 {
				t.Errorf("%s: timeout %v", c.cfg, mc.Escalation.callTimeout())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one mentioning %q", c.cfg, err, c.err)
		}
	}
	mc, err := parseModelConfig([]byte(`{"escalation": {"to": "c", "max_prob_below": 0.5, "timeout": "250ms"}}`))
	if err != nil || mc.Escalation.callTimeout().String() != "250ms" {
		t.Errorf("timeout: %v, %v", mc.Escalation.callTimeout(), err)
	}
}

func TestSpecsFit(t *testing.T) {
	spec := func(dt models.DataType, shape ...int64) models.TensorSpec {
		return models.TensorSpec{Name: "t", DataType: dt, Shape: shape}
	}
	cases := []struct {
		out, in models.TensorSpec
		ok      bool
	}{
		{spec(models.FP32, -1, 6), spec(models.FP32, -1, 6), true},
		{spec(models.FP32, 2, 6), spec(models.FP32, -1, 6), true},
		{spec(models.FP32, -1, -1), spec(models.FP32, -1, 6), true},
		{spec(models.FP32, -1, 4), spec(models.FP32, -1, 6), false},
		{spec(models.FP64, -1, 6), spec(models.FP32, -1, 6), false},
		{spec(models.FP32, -1, 6), spec(models.FP32, 6), false},
	}
	for i, c := range cases {
		if err := specsFit(c.out, c.in); (err == nil) != c.ok {
			t.Errorf("case %d: %v, want ok %v", i, err, c.ok)
		}
	}
}

func TestHeaderSafe(t *testing.T) {
	got := headerSafe("bad\r\nvalue\x00é" + strings.Repeat("x", 400))
	if strings.ContainsAny(got, "\r\n\x00") || len(got) > maxEscalationReason {
		t.Errorf("headerSafe gave %q (%d bytes)", got, len(got))
	}
}
