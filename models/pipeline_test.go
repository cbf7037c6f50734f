package models

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func spec(name string, dt DataType, shape ...int64) TensorSpec {
	return TensorSpec{Name: name, DataType: dt, Shape: shape}
}

func TestWirePipeline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a, b  Signature
		links []Link
		err   string
	}{
		{"one to one, names differ", Signature{Outputs: []TensorSpec{spec("y", FP32, -1, 16)}}, Signature{Inputs: []TensorSpec{spec("x", FP32, -1, 16)}}, []Link{{"y", "x"}}, ""},
		{"dynamic fits fixed", Signature{Outputs: []TensorSpec{spec("y", FP32, -1, 16)}}, Signature{Inputs: []TensorSpec{spec("x", FP32, 4, -1)}}, []Link{{"y", "x"}}, ""},
		{"width differs", Signature{Outputs: []TensorSpec{spec("y", FP32, -1, 16)}}, Signature{Inputs: []TensorSpec{spec("x", FP32, -1, 32)}}, nil, "dimension 1"},
		{"datatype differs", Signature{Outputs: []TensorSpec{spec("y", FP32, -1, 16)}}, Signature{Inputs: []TensorSpec{spec("x", Int64, -1, 16)}}, nil, "datatype"},
		{"rank differs", Signature{Outputs: []TensorSpec{spec("y", FP32, -1, 16)}}, Signature{Inputs: []TensorSpec{spec("x", FP32, 16)}}, nil, "rank"},
		{"by name", Signature{Outputs: []TensorSpec{spec("u", FP32, 2), spec("v", FP32, 3)}}, Signature{Inputs: []TensorSpec{spec("v", FP32, 3)}}, []Link{{"v", "v"}}, ""},
		{"name missing", Signature{Outputs: []TensorSpec{spec("u", FP32, 2), spec("v", FP32, 3)}}, Signature{Inputs: []TensorSpec{spec("w", FP32, 3)}}, nil, `input "w" has no output of that name; the outputs are [u, v]`},
	} {
		ls, err := WirePipeline(tc.a, tc.b)
		if tc.err != "" {
			var le *LinkError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &le) {
				t.Errorf("%s: %v, want a *LinkError mentioning %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || len(ls) != len(tc.links) || (len(ls) > 0 && ls[0] != tc.links[0]) {
			t.Errorf("%s: %v %v, want %v", tc.name, ls, err, tc.links)
		}
	}
}

func TestPipelineSignature(t *testing.T) {
	a := Signature{Inputs: []TensorSpec{spec("in", FP32, -1, 64)}, Outputs: []TensorSpec{spec("h", FP32, -1, 16)}}
	b := Signature{Inputs: []TensorSpec{spec("x", FP32, -1, 16)}, Outputs: []TensorSpec{spec("p", FP32, -1, 4)}}
	c := Signature{Inputs: []TensorSpec{spec("x", FP32, -1, 8)}, Outputs: []TensorSpec{spec("q", FP32, -1, 2)}}
	sig, links, err := PipelineSignature([]Signature{a, b})
	if err != nil || sig.Inputs[0].Name != "in" || sig.Outputs[0].Name != "p" || len(links) != 1 {
		t.Fatalf("a->b: %+v %v %v", sig, links, err)
	}
	_, _, err = PipelineSignature([]Signature{a, b, c})
	var se *StepLinkError
	if !errors.As(err, &se) || se.Step != 2 || !strings.Contains(err.Error(), "step 2 to step 3") {
		t.Fatalf("a->b->c: %v, want a StepLinkError at step 2", err)
	}
}

func TestPipelineManifestValidate(t *testing.T) {
	d := DigestBytes([]byte("x"))
	good := func() *Manifest {
		return &Manifest{Name: "p", Version: "1", Format: FormatPipeline, CreatedAt: time.Unix(1, 0).UTC(),
			Signature: Signature{Inputs: []TensorSpec{spec("in", FP32, -1, 4)}, Outputs: []TensorSpec{spec("out", FP32, -1, 2)}},
			Pipeline:  &Pipeline{Steps: []PipelineStep{{"a", "1", d}, {"b", "2", d}}}}
	}
	for _, tc := range []struct {
		name   string
		change func(*Manifest)
		want   string
	}{
		{"good", func(*Manifest) {}, ""},
		{"one step", func(m *Manifest) { m.Pipeline.Steps = m.Pipeline.Steps[:1] }, "1 steps"},
		{"17 steps", func(m *Manifest) {
			m.Pipeline.Steps = nil
			for range 17 {
				m.Pipeline.Steps = append(m.Pipeline.Steps, PipelineStep{"a", "1", d})
			}
		}, "17 steps"},
		{"self", func(m *Manifest) { m.Pipeline.Steps[1].Model = "p" }, "the pipeline itself"},
		{"no version", func(m *Manifest) { m.Pipeline.Steps[0].Version = "" }, "pins every step"},
		{"bad model", func(m *Manifest) { m.Pipeline.Steps[0].Model = "../a" }, "step 1: model"},
		{"no step digest", func(m *Manifest) { m.Pipeline.Steps[0].Digest = "" }, "no digest"},
		{"bad step digest", func(m *Manifest) { m.Pipeline.Steps[0].Digest = "md5:1" }, "digest"},
		{"own digest", func(m *Manifest) { m.Digest = d }, "no artifact"},
		{"no pipeline", func(m *Manifest) { m.Pipeline = nil }, "without a pipeline"},
		{"onnx with pipeline", func(m *Manifest) { m.Format = FormatONNX }, "cannot have a pipeline"},
		{"unknown format", func(m *Manifest) { m.Format = "tflite" }, "format"},
	} {
		m := good()
		tc.change(m)
		err := m.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidManifest))) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestServingDigest(t *testing.T) {
	onnx := Manifest{Name: "a", Version: "1", Format: FormatONNX, Digest: DigestBytes([]byte("m"))}
	if onnx.ServingDigest() != onnx.Digest {
		t.Fatalf("onnx serving digest %s, want the file's %s", onnx.ServingDigest(), onnx.Digest)
	}
	d := DigestBytes([]byte("x"))
	p := Manifest{Name: "p", Version: "1", Format: FormatPipeline, Pipeline: &Pipeline{Steps: []PipelineStep{{"a", "1", d}, {"b", "1", d}}}}
	s1 := p.ServingDigest()
	if !digestRE.MatchString(s1) || s1 != p.ServingDigest() {
		t.Fatalf("pipeline serving digest %q is not a stable digest", s1)
	}
	q := p
	q.Pipeline = &Pipeline{Steps: []PipelineStep{{"a", "1", d}, {"b", "2", d}}}
	if q.ServingDigest() == s1 {
		t.Fatal("another step version gives the same serving digest")
	}
}
