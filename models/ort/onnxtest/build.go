// Package onnxtest builds tiny ONNX models by hand and reads the ONNX
// project's published node tests, for testing runtimes without a Python
// toolchain. It encodes and decodes the protobuf wire format directly.
//
// Build a model:
//
//	model := onnxtest.Model(onnxtest.Graph{
//		Nodes:   []onnxtest.Node{{Op: "Add", Inputs: []string{"a", "b"}, Outputs: []string{"y"}}},
//		Inputs:  []onnxtest.Value{{Name: "a", Type: models.FP32, Shape: []int64{-1, 3}}, ...},
//		Outputs: []onnxtest.Value{{Name: "y", Type: models.FP32, Shape: []int64{-1, 3}}},
//	}, 17)
package onnxtest

import (
	"encoding/binary"
	"fmt"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort/internal/pb"
)

// ElemType returns the ONNX TensorProto.DataType number of a datatype.
func ElemType(dt models.DataType) int32 {
	for k, v := range elemTypes {
		if v == dt {
			return k
		}
	}
	panic(fmt.Sprintf("onnxtest: no ONNX type for %q", dt))
}

var elemTypes = map[int32]models.DataType{
	1: models.FP32, 2: models.Uint8, 3: models.Int8, 4: models.Uint16,
	5: models.Int16, 6: models.Int32, 7: models.Int64, 8: models.Bytes,
	9: models.Bool, 10: models.FP16, 11: models.FP64, 12: models.Uint32,
	13: models.Uint64, 16: models.BF16,
}

// Value declares a graph input or output.
type Value struct {
	Name string
	Type models.DataType
	// RawType, when not 0, overrides Type with an ONNX element type number
	// (to declare types Petrel does not know, like COMPLEX64 = 14).
	RawType int32
	// Shape has -1 for a symbolic dimension (named by Params[i], or
	// "d<i>"); nil declares no shape at all (unknown rank); empty declares
	// a scalar.
	Shape  []int64
	Params []string
}

// Node is one operator.
type Node struct {
	Op      string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Attr is a node attribute; set exactly one of the value fields.
type Attr struct {
	Name   string
	Int    *int64
	Ints   []int64
	Float  *float32
	String *string
	Tensor *models.Tensor
}

// Int returns an integer attribute.
func Int(name string, v int64) Attr { return Attr{Name: name, Int: &v} }

// Ints returns an integer-list attribute.
func Ints(name string, v ...int64) Attr { return Attr{Name: name, Ints: v} }

// Float returns a float attribute.
func Float(name string, v float32) Attr { return Attr{Name: name, Float: &v} }

// Str returns a string attribute.
func Str(name, v string) Attr { return Attr{Name: name, String: &v} }

// TensorAttr returns a tensor attribute (as Constant's "value").
func TensorAttr(name string, t models.Tensor) Attr { return Attr{Name: name, Tensor: &t} }

// Graph is a model's main graph.
type Graph struct {
	Name         string
	Nodes        []Node
	Inputs       []Value
	Outputs      []Value
	Initializers []models.Tensor
}

// Model encodes g as an ONNX ModelProto importing the default operator set
// at version opset (IR version 8).
func Model(g Graph, opset int64) []byte {
	var m pb.Buffer
	m.Int(1, 8) // ir_version
	m.String(2, "petrel-onnxtest")
	m.Message(7, func(b *pb.Buffer) { encodeGraph(b, g) })
	m.Message(8, func(b *pb.Buffer) {
		b.String(1, "")
		b.Int(2, opset)
	})
	return m
}

func encodeGraph(b *pb.Buffer, g Graph) {
	for _, n := range g.Nodes {
		b.Message(1, func(b *pb.Buffer) {
			for _, in := range n.Inputs {
				b.String(1, in)
			}
			for _, out := range n.Outputs {
				b.String(2, out)
			}
			b.String(4, n.Op)
			for _, a := range n.Attrs {
				b.Message(5, func(b *pb.Buffer) { encodeAttr(b, a) })
			}
			if n.Domain != "" {
				b.String(7, n.Domain)
			}
		})
	}
	name := g.Name
	if name == "" {
		name = "g"
	}
	b.String(2, name)
	for _, t := range g.Initializers {
		b.Message(5, func(b *pb.Buffer) { EncodeTensor(b, t) })
	}
	for _, v := range g.Inputs {
		b.Message(11, func(b *pb.Buffer) { encodeValue(b, v) })
	}
	for _, v := range g.Outputs {
		b.Message(12, func(b *pb.Buffer) { encodeValue(b, v) })
	}
}

func encodeAttr(b *pb.Buffer, a Attr) {
	b.String(1, a.Name)
	switch {
	case a.Float != nil:
		b.Float(2, *a.Float)
		b.Int(20, 1)
	case a.Int != nil:
		b.Int(3, *a.Int)
		b.Int(20, 2)
	case a.String != nil:
		b.String(4, *a.String)
		b.Int(20, 3)
	case a.Tensor != nil:
		b.Message(5, func(b *pb.Buffer) { EncodeTensor(b, *a.Tensor) })
		b.Int(20, 4)
	default:
		for _, v := range a.Ints {
			b.Int(8, v)
		}
		b.Int(20, 7)
	}
}

func encodeValue(b *pb.Buffer, v Value) {
	b.String(1, v.Name)
	b.Message(2, func(b *pb.Buffer) { // TypeProto
		b.Message(1, func(b *pb.Buffer) { // TypeProto.Tensor
			et := v.RawType
			if et == 0 {
				et = ElemType(v.Type)
			}
			b.Int(1, int64(et))
			if v.Shape == nil {
				return
			}
			b.Message(2, func(b *pb.Buffer) { // TensorShapeProto
				for i, d := range v.Shape {
					b.Message(1, func(b *pb.Buffer) {
						if d >= 0 {
							b.Int(1, d)
							return
						}
						p := fmt.Sprintf("d%d", i)
						if i < len(v.Params) && v.Params[i] != "" {
							p = v.Params[i]
						}
						b.String(2, p)
					})
				}
			})
		})
	})
}

// EncodeTensor writes t as the fields of an ONNX TensorProto: fixed-size
// data as raw_data, BYTES as string_data.
func EncodeTensor(b *pb.Buffer, t models.Tensor) {
	for _, d := range t.Shape {
		b.Int(1, d)
	}
	b.Int(2, int64(ElemType(t.DataType)))
	b.String(8, t.Name)
	if t.DataType != models.Bytes {
		b.Bytes(9, t.Data)
		return
	}
	for d := t.Data; len(d) >= 4; {
		l := binary.LittleEndian.Uint32(d)
		b.Bytes(6, d[4:4+l])
		d = d[4+l:]
	}
}
