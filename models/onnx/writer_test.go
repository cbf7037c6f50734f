package onnx

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// message is a decoded protobuf message: the values of each field in
// order, varints as uint64, fixed32 as uint32, length-delimited as []byte.
type message map[protowire.Number][]any

func decode(t *testing.T, b []byte) message {
	t.Helper()
	m := message{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var v any
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			v, n = protowire.ConsumeFixed32(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		m[num] = append(m[num], v)
	}
	return m
}

func (m message) int(num protowire.Number) int64 {
	if len(m[num]) != 1 {
		return -999
	}
	return int64(m[num][0].(uint64))
}

func (m message) str(num protowire.Number) string {
	if len(m[num]) != 1 {
		return "<missing or repeated>"
	}
	return string(m[num][0].([]byte))
}

func (m message) strs(num protowire.Number) []string {
	var out []string
	for _, v := range m[num] {
		out = append(out, string(v.([]byte)))
	}
	return out
}

func (m message) msgs(t *testing.T, num protowire.Number) []message {
	var out []message
	for _, v := range m[num] {
		out = append(out, decode(t, v.([]byte)))
	}
	return out
}

// TestMarshalStructure reads the ModelProto back field by field, checking
// the numbering independently of any runtime.
func TestMarshalStructure(t *testing.T) {
	m := NewMLP([]int{3, 4, 2}, Softmax).RandomInit(5)
	m.Name, m.Doc, m.Version = "tiny", "a test model", 7
	m.Layers[1].B = []float32{0.25, -0.5}
	m.Metadata = map[string]string{"z.last": "1", "a.first": "2"}
	b, err := m.MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	model := decode(t, b)
	if v := model.int(1); v != 8 {
		t.Errorf("ir_version = %d", v)
	}
	if v := model.str(2); v != "petrel" {
		t.Errorf("producer_name = %q", v)
	}
	if v := model.int(5); v != 7 {
		t.Errorf("model_version = %d", v)
	}
	if v := model.str(6); v != "a test model" {
		t.Errorf("doc_string = %q", v)
	}
	opsets := model.msgs(t, 8)
	if len(opsets) != 1 || opsets[0].int(2) != 17 || len(opsets[0][1]) != 0 {
		t.Errorf("opset_import = %v, want one default-domain entry version 17", opsets)
	}
	var meta [][2]string
	for _, e := range model.msgs(t, 14) {
		meta = append(meta, [2]string{e.str(1), e.str(2)})
	}
	wantMeta := [][2]string{
		{"petrel.family", "mlp"}, {"petrel.layers", "3,4,2"}, {"petrel.hidden", "relu"},
		{"petrel.output", "softmax"}, {"a.first", "2"}, {"z.last", "1"},
	}
	if !slices.Equal(meta, wantMeta) {
		t.Errorf("metadata_props = %v, want %v", meta, wantMeta)
	}

	graphs := model.msgs(t, 7)
	if len(graphs) != 1 {
		t.Fatalf("%d graphs", len(graphs))
	}
	g := graphs[0]
	if v := g.str(2); v != "tiny" {
		t.Errorf("graph name = %q", v)
	}
	var ops []string
	for _, n := range g.msgs(t, 1) {
		ops = append(ops, n.str(4)+"("+strings.Join(n.strs(1), ",")+")->"+strings.Join(n.strs(2), ","))
		if n.str(4) == "Softmax" {
			a := n.msgs(t, 5)
			if len(a) != 1 || a[0].str(1) != "axis" || a[0].int(3) != -1 || a[0].int(20) != 2 {
				t.Errorf("Softmax attributes = %v, want axis=-1 of type INT", a)
			}
		}
	}
	wantOps := []string{
		"Gemm(input,dense0.W,dense0.B)->dense0.out",
		"Relu(dense0.out)->dense0.relu",
		"Gemm(dense0.relu,dense1.W,dense1.B)->dense1.out",
		"Softmax(dense1.out)->probabilities",
	}
	if !slices.Equal(ops, wantOps) {
		t.Errorf("nodes:\n%v\nwant\n%v", ops, wantOps)
	}

	inits := g.msgs(t, 5)
	if len(inits) != 4 {
		t.Fatalf("%d initializers, want 4", len(inits))
	}
	check := func(i int, name string, dims []uint64, data []float32) {
		t.Helper()
		tp := inits[i]
		var gotDims []uint64
		for _, d := range tp[1] {
			gotDims = append(gotDims, d.(uint64))
		}
		if tp.str(8) != name || !slices.Equal(gotDims, dims) || tp.int(2) != 1 {
			t.Errorf("initializer %d: name %q dims %v type %d, want %q %v FLOAT", i, tp.str(8), gotDims, tp.int(2), name, dims)
		}
		raw := tp[9][0].([]byte)
		if len(raw) != 4*len(data) {
			t.Fatalf("%s raw_data has %d bytes, want %d", name, len(raw), 4*len(data))
		}
		for k, f := range data {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:])); got != f {
				t.Fatalf("%s[%d] = %v, want %v", name, k, got, f)
			}
		}
	}
	check(0, "dense0.W", []uint64{3, 4}, m.Layers[0].W)
	check(1, "dense0.B", []uint64{4}, m.Layers[0].B)
	check(2, "dense1.W", []uint64{4, 2}, m.Layers[1].W)
	check(3, "dense1.B", []uint64{2}, m.Layers[1].B)

	io := func(vi message, name, dim0 string, dim1 int64) {
		t.Helper()
		if vi.str(1) != name {
			t.Errorf("value info name %q, want %q", vi.str(1), name)
		}
		tt := vi.msgs(t, 2)[0].msgs(t, 1)[0]
		if tt.int(1) != 1 {
			t.Errorf("%s elem_type %d, want FLOAT", name, tt.int(1))
		}
		dims := tt.msgs(t, 2)[0].msgs(t, 1)
		if len(dims) != 2 || dims[0].str(2) != dim0 || dims[1].int(1) != dim1 {
			t.Errorf("%s dims = %v, want [%s, %d]", name, dims, dim0, dim1)
		}
	}
	io(g.msgs(t, 11)[0], "input", "batch", 3)
	io(g.msgs(t, 12)[0], "probabilities", "batch", 2)
	if len(g[11]) != 1 || len(g[12]) != 1 {
		t.Errorf("graph has %d inputs and %d outputs, want 1 and 1", len(g[11]), len(g[12]))
	}

	again, _ := m.MarshalONNX()
	if string(again) != string(b) {
		t.Error("MarshalONNX is not deterministic")
	}
}

func TestIdentityOutputHasNoActivationNode(t *testing.T) {
	for _, m := range []*Model{NewLinear(3, 2), NewMLP([]int{3, 5, 5, 2}, Identity)} {
		b, err := m.MarshalONNX()
		if err != nil {
			t.Fatal(err)
		}
		nodes := decode(t, decode(t, b)[7][0].([]byte)).msgs(t, 1)
		last := nodes[len(nodes)-1]
		if last.str(4) != "Gemm" || strings.Join(last.strs(2), ",") != m.Signature().Outputs[0].Name {
			t.Errorf("%s: last node %s -> %v", m.Family, last.str(4), last.strs(2))
		}
		if want := 2*len(m.Layers) - 1; len(nodes) != want {
			t.Errorf("%s: %d nodes, want %d", m.Family, len(nodes), want)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	m := NewSoftmax(4, 3).RandomInit(9)
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.MarshalONNX()
	if string(got) != string(want) {
		t.Error("file differs from MarshalONNX")
	}
	bad := NewSoftmax(4, 3)
	bad.Layers[0].W = nil
	if err := bad.WriteFile(filepath.Join(dir, "bad.onnx")); err == nil {
		t.Error("invalid model written")
	}
	if err := m.WriteFile(filepath.Join(dir, "missing", "m.onnx")); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "model.onnx" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only model.onnx", names)
	}
}
