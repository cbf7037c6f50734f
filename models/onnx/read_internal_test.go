package onnx

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// rewrite returns message b with every length-delimited field num replaced
// by f's result (dropped when f returns nil), other fields kept as they
// are, and the extra fields appended.
func rewrite(t *testing.T, b []byte, num protowire.Number, f func(v []byte) []byte, extra ...[]byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		n, typ, tl := protowire.ConsumeTag(b)
		if tl < 0 {
			t.Fatalf("rewrite: bad tag")
		}
		vl := protowire.ConsumeFieldValue(n, typ, b[tl:])
		if vl < 0 {
			t.Fatalf("rewrite: bad value")
		}
		field := b[:tl+vl]
		if n == num && typ == protowire.BytesType && f != nil {
			v, _ := protowire.ConsumeBytes(b[tl:])
			if nv := f(v[:len(v):len(v)]); nv != nil {
				out = appendBytesField(out, num, nv)
			}
		} else {
			out = append(out, field...)
		}
		b = b[tl+vl:]
	}
	for _, e := range extra {
		out = append(out, e...)
	}
	return out
}

// inGraph rewrites field num of the graph of model b.
func inGraph(t *testing.T, b []byte, num protowire.Number, f func(v []byte) []byte, extra ...[]byte) []byte {
	return rewrite(t, b, fModelGraph, func(g []byte) []byte { return rewrite(t, g, num, f, extra...) })
}

// nth applies f to the i-th occurrence only.
func nth(i int, f func(v []byte) []byte) func([]byte) []byte {
	k := -1
	return func(v []byte) []byte {
		k++
		if k == i {
			return f(v)
		}
		return v
	}
}

func metaValue(t *testing.T, key, value string) func([]byte) []byte {
	return func(v []byte) []byte {
		k, _, err := parseEntry(v)
		if err != nil {
			t.Fatal(err)
		}
		if k != key {
			return v
		}
		if value == "\x00drop" {
			return nil
		}
		return encodeEntry(key, value)
	}
}

func attrFloat(name string, f float32) []byte {
	b := appendStringField(nil, fAttrName, name)
	b = protowire.AppendTag(b, fAttrF, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(f))
	return appendVarintField(b, fAttrType, attrTypeFloat)
}

func testModel() *Model {
	m := NewMLP([]int{3, 4, 2}, Softmax).RandomInit(3)
	m.Layers[0].B[1] = 0.5
	return m
}

func marshal(t *testing.T, m *Model) []byte {
	t.Helper()
	b, err := m.MarshalONNX()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// toFloatData moves an initializer's raw_data into float_data, packed or
// one fixed32 field per element.
func toFloatData(t *testing.T, packed bool) func([]byte) []byte {
	return func(tensor []byte) []byte {
		var raw []byte
		out := rewrite(t, tensor, fTensorRawData, func(v []byte) []byte { raw = v; return nil })
		if packed {
			return appendBytesField(out, fTensorFloatData, raw)
		}
		for i := 0; i < len(raw); i += 4 {
			out = protowire.AppendTag(out, fTensorFloatData, protowire.Fixed32Type)
			out = protowire.AppendFixed32(out, binary.LittleEndian.Uint32(raw[i:]))
		}
		return out
	}
}

// TestParseAcceptsEquivalentEncodings: files other tools may write for the
// same graph parse to the same model.
func TestParseAcceptsEquivalentEncodings(t *testing.T) {
	m := testModel()
	b := marshal(t, m)
	var initInputs [][]byte
	for i, l := range m.Layers {
		initInputs = append(initInputs,
			appendBytesField(nil, fGraphInput, encodeFloatValueInfo(layerName(i, "W"), []int64{int64(l.In), int64(l.Out)})),
			appendBytesField(nil, fGraphInput, encodeFloatValueInfo(layerName(i, "B"), []int64{int64(l.Out)})))
	}
	gemmAttrs := func(node []byte) []byte {
		for _, a := range [][]byte{attrFloat("alpha", 1), attrFloat("beta", 1), attrInt("transA", 0), attrInt("transB", 0)} {
			node = appendBytesField(node, fNodeAttribute, a)
		}
		return node
	}
	cases := map[string][]byte{
		"float_data packed":                    inGraph(t, b, fGraphInitializer, toFloatData(t, true)),
		"float_data unpacked":                  inGraph(t, b, fGraphInitializer, toFloatData(t, false)),
		"initializers listed as inputs (IR 3)": inGraph(t, b, 0, nil, initInputs...),
		"explicit Gemm defaults":               inGraph(t, b, fGraphNode, nth(0, gemmAttrs)),
		"softmax axis 1": inGraph(t, b, fGraphNode, nth(3, func(n []byte) []byte {
			return rewrite(t, n, fNodeAttribute, func([]byte) []byte { return attrInt("axis", 1) })
		})),
		"nodes renamed, ai.onnx domain": inGraph(t, b, fGraphNode, func(n []byte) []byte {
			n = rewrite(t, n, fNodeName, func([]byte) []byte { return []byte("x") })
			return appendStringField(n, fNodeDomain, "ai.onnx")
		}),
		"packed dims": inGraph(t, b, fGraphInitializer, nth(0, func(tensor []byte) []byte {
			var dims []byte
			for len(tensor) > 0 && tensor[0] == byte(fTensorDims<<3) {
				v, n := protowire.ConsumeVarint(tensor[1:])
				dims = protowire.AppendVarint(dims, v)
				tensor = tensor[1+n:]
			}
			return append(appendBytesField(nil, fTensorDims, dims), tensor...)
		})),
		"unknown fields": rewrite(t, inGraph(t, b, 0, nil, appendStringField(nil, 99, "x")), 0, nil, appendVarintField(nil, 77, 1)),
	}
	for name, file := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(file)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got.Layers, m.Layers) || got.Output != m.Output || got.Hidden != m.Hidden {
				t.Fatalf("parsed %+v, want %+v", *got, *m)
			}
		})
	}
}

// TestParseRejects changes one thing at a time in a valid file.
func TestParseRejects(t *testing.T) {
	m := testModel()
	b := marshal(t, m)
	nan := inGraph(t, b, fGraphInitializer, nth(0, func(tensor []byte) []byte {
		return rewrite(t, tensor, fTensorRawData, func(raw []byte) []byte {
			raw = append([]byte(nil), raw...)
			binary.LittleEndian.PutUint32(raw, math.Float32bits(float32(math.NaN())))
			return raw
		})
	}))
	doubleInit := inGraph(t, b, fGraphInitializer, nth(1, func(tensor []byte) []byte {
		return rewrite(t, tensor, 0, nil, appendVarintField(nil, fTensorDataType, 11))
	}))
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"no family", rewrite(t, b, fModelMetadataProps, metaValue(t, MetaFamily, "\x00drop")), "no petrel.family"},
		{"layers disagree", rewrite(t, b, fModelMetadataProps, metaValue(t, MetaLayers, "3,5,2")), "petrel.layers"},
		{"output disagrees", rewrite(t, b, fModelMetadataProps, metaValue(t, MetaOutput, "sigmoid")), "petrel.output"},
		{"hidden disagrees", rewrite(t, b, fModelMetadataProps, metaValue(t, MetaHidden, "tanh")), "petrel.hidden"},
		{"unknown family", rewrite(t, b, fModelMetadataProps, metaValue(t, MetaFamily, "cnn")), "unknown family"},
		{"transB", inGraph(t, b, fGraphNode, nth(0, func(n []byte) []byte { return appendBytesField(n, fNodeAttribute, attrInt("transB", 1)) })), "transB"},
		{"alpha 2", inGraph(t, b, fGraphNode, nth(0, func(n []byte) []byte { return appendBytesField(n, fNodeAttribute, attrFloat("alpha", 2)) })), "alpha"},
		{"custom domain", inGraph(t, b, fGraphNode, nth(1, func(n []byte) []byte { return appendStringField(n, fNodeDomain, "com.example") })), "domain"},
		{"extra node", inGraph(t, b, 0, nil, appendBytesField(nil, fGraphNode, encodeNode("x", "Identity", []string{"probabilities"}, []string{"y"}))), "Identity"},
		{"softmax over axis 0", inGraph(t, b, fGraphNode, nth(3, func(n []byte) []byte {
			return rewrite(t, n, fNodeAttribute, func([]byte) []byte { return attrInt("axis", 0) })
		})), "axis"},
		{"NaN weight", nan, "is NaN"},
		{"double initializer", doubleInit, "data type 11"},
		{"external data", inGraph(t, b, fGraphInitializer, nth(0, func(tensor []byte) []byte {
			return rewrite(t, tensor, 0, nil, appendVarintField(nil, fTensorDataLocation, 1))
		})), "external data"},
		{"short raw_data", inGraph(t, b, fGraphInitializer, nth(0, func(tensor []byte) []byte {
			return rewrite(t, tensor, fTensorRawData, func(raw []byte) []byte { return raw[:len(raw)-4] })
		})), "raw_data"},
		{"no opset", rewrite(t, b, fModelOpsetImport, func([]byte) []byte { return nil }), "opset"},
		{"second graph input", inGraph(t, b, 0, nil, appendBytesField(nil, fGraphInput, encodeFloatValueInfo("other", []int64{-1, 3}))), "2 inputs"},
		{"unused initializer", inGraph(t, b, 0, nil, appendBytesField(nil, fGraphInitializer, encodeFloatTensor("spare", []int64{1}, []float32{1}))), "no layer uses"},
		{"input width", inGraph(t, b, fGraphInput, func([]byte) []byte { return encodeFloatValueInfo("input", []int64{-1, 4}) }), "shape [3 4], want [4, out]"},
		{"no graph", rewrite(t, b, fModelGraph, func([]byte) []byte { return nil }), "no graph"},
		{"no ir_version", b[2:], "no ir_version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.file)
			if err == nil {
				t.Fatalf("parsed %+v", *got)
			}
			if !errors.Is(err, ErrNotPetrelModel) {
				t.Errorf("error %v does not wrap ErrNotPetrelModel", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse(nan); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("NaN weight: %v does not wrap ErrInvalidModel", err)
	}
}

// FuzzParse: Parse never panics, and whatever it accepts writes back to a
// file that parses to the same model.
func FuzzParse(f *testing.F) {
	for _, m := range []*Model{testModel(), NewLogistic(2), NewSoftmax(2, 3)} {
		b, err := m.MarshalONNX()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrNotPetrelModel) {
				t.Fatalf("error %v does not wrap ErrNotPetrelModel", err)
			}
			return
		}
		again, err := m.MarshalONNX()
		if err != nil {
			t.Fatalf("parsed model does not marshal: %v", err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-marshalled model does not parse: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the model:\n%+v\n%+v", *m, *m2)
		}
	})
}
