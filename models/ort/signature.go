package ort

import (
	"errors"
	"fmt"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort/internal/pb"
	onnx "github.com/yalue/onnxruntime_go"
)

// ErrInvalidModel wraps failures to read or load the model bytes.
var ErrInvalidModel = errors.New("ort: invalid ONNX model")

// ONNX TensorProto.DataType values (ONNX Runtime's element types use the
// same numbers).
const (
	onnxFloat    = 1
	onnxUint8    = 2
	onnxInt8     = 3
	onnxUint16   = 4
	onnxInt16    = 5
	onnxInt32    = 6
	onnxInt64    = 7
	onnxString   = 8
	onnxBool     = 9
	onnxFloat16  = 10
	onnxDouble   = 11
	onnxUint32   = 12
	onnxUint64   = 13
	onnxBFloat16 = 16
)

var fromONNX = map[int32]models.DataType{
	onnxFloat: models.FP32, onnxUint8: models.Uint8, onnxInt8: models.Int8,
	onnxUint16: models.Uint16, onnxInt16: models.Int16, onnxInt32: models.Int32,
	onnxInt64: models.Int64, onnxString: models.Bytes, onnxBool: models.Bool,
	onnxFloat16: models.FP16, onnxDouble: models.FP64, onnxUint32: models.Uint32,
	onnxUint64: models.Uint64, onnxBFloat16: models.BF16,
}

// onnxTypeNames names the element types Petrel cannot carry, for errors.
var onnxTypeNames = map[int32]string{
	0: "UNDEFINED", 14: "COMPLEX64", 15: "COMPLEX128", 17: "FLOAT8E4M3FN",
	18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4",
	22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2",
}

// ioSpec is one graph input or output as the session uses it.
type ioSpec struct {
	models.TensorSpec // Shape is nil when the model does not declare the rank
	ortType           onnx.TensorElementDataType
	// static is true when the rank and every dimension are known; then
	// outputs are preallocated and written by ONNX Runtime in place.
	static bool
	params []string // per dimension, the symbolic name of a dynamic one, or ""
}

// Field numbers of the ONNX protobuf messages read here.
const (
	modelGraph           = 7  // ModelProto.graph
	graphInitializer     = 5  // GraphProto.initializer
	graphInput           = 11 // GraphProto.input
	graphOutput          = 12 // GraphProto.output
	graphSparseInit      = 15 // GraphProto.sparse_initializer
	tensorName           = 8  // TensorProto.name
	sparseValues         = 1  // SparseTensorProto.values
	valueInfoName        = 1  // ValueInfoProto.name
	valueInfoType        = 2  // ValueInfoProto.type
	typeTensor           = 1  // TypeProto.tensor_type
	typeSequence         = 4  // TypeProto.sequence_type
	typeMap              = 5  // TypeProto.map_type
	typeSparse           = 8  // TypeProto.sparse_tensor_type
	typeOptional         = 9  // TypeProto.optional_type
	tensorTypeElem       = 1  // TypeProto.Tensor.elem_type
	tensorTypeShape      = 2  // TypeProto.Tensor.shape
	shapeDim             = 1  // TensorShapeProto.dim
	dimValue             = 1  // TensorShapeProto.Dimension.dim_value
	dimParam             = 2  // TensorShapeProto.Dimension.dim_param
	maxDeclaredDimension = 1 << 53
)

// parseSignature reads the graph's inputs (less those fed by initializers,
// as ONNX Runtime does) and outputs from the model bytes. It does not
// validate the graph; creating a session does.
func parseSignature(model []byte) (inputs, outputs []ioSpec, err error) {
	if len(model) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrInvalidModel)
	}
	var graph []byte
	err = pb.Walk(model, func(f pb.Field) error {
		if f.Num == modelGraph && f.Type == pb.Bytes {
			graph = f.B
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	if graph == nil {
		return nil, nil, fmt.Errorf("%w: no graph", ErrInvalidModel)
	}
	var ins, outs [][]byte
	inits := map[string]bool{}
	err = pb.Walk(graph, func(f pb.Field) error {
		if f.Type != pb.Bytes {
			return nil
		}
		switch f.Num {
		case graphInput:
			ins = append(ins, f.B)
		case graphOutput:
			outs = append(outs, f.B)
		case graphInitializer:
			name, err := stringField(f.B, tensorName)
			inits[name] = true
			return err
		case graphSparseInit:
			values, err := bytesField(f.B, sparseValues)
			if err != nil {
				return err
			}
			name, err := stringField(values, tensorName)
			inits[name] = true
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: graph: %w", ErrInvalidModel, err)
	}
	for _, b := range ins {
		s, err := parseValueInfo(b)
		if err != nil {
			return nil, nil, fmt.Errorf("graph input: %w", err)
		}
		if !inits[s.Name] {
			inputs = append(inputs, s)
		}
	}
	for _, b := range outs {
		s, err := parseValueInfo(b)
		if err != nil {
			return nil, nil, fmt.Errorf("graph output: %w", err)
		}
		outputs = append(outputs, s)
	}
	if len(inputs) == 0 {
		return nil, nil, fmt.Errorf("%w: the graph has no inputs (models that take none are not supported)", ErrInvalidModel)
	}
	if len(outputs) == 0 {
		return nil, nil, fmt.Errorf("%w: the graph has no outputs", ErrInvalidModel)
	}
	sig := signatureOf(inputs, outputs)
	if err := sig.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	return inputs, outputs, nil
}

func parseValueInfo(b []byte) (ioSpec, error) {
	var s ioSpec
	var typ []byte
	err := pb.Walk(b, func(f pb.Field) error {
		switch {
		case f.Num == valueInfoName && f.Type == pb.Bytes:
			s.Name = string(f.B)
		case f.Num == valueInfoType && f.Type == pb.Bytes:
			typ = f.B
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalidModel, err)
	}
	if typ == nil {
		return s, fmt.Errorf("%w: %q has no type", ErrInvalidModel, s.Name)
	}
	var tensor []byte
	kind := ""
	err = pb.Walk(typ, func(f pb.Field) error {
		switch f.Num {
		case typeTensor:
			tensor = f.B
		case typeSequence:
			kind = "a sequence"
		case typeMap:
			kind = "a map"
		case typeSparse:
			kind = "a sparse tensor"
		case typeOptional:
			kind = "an optional"
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("%w: %q: %w", ErrInvalidModel, s.Name, err)
	}
	if tensor == nil {
		if kind == "" {
			kind = "not a tensor"
		}
		return s, fmt.Errorf("%q is %s: %w (only dense tensors are)", s.Name, kind, models.ErrUnsupportedDataType)
	}
	elem := int32(0)
	var shape []byte
	err = pb.Walk(tensor, func(f pb.Field) error {
		switch {
		case f.Num == tensorTypeElem && f.Type == pb.Varint:
			elem = int32(f.U)
		case f.Num == tensorTypeShape && f.Type == pb.Bytes:
			shape = f.B
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("%w: %q: %w", ErrInvalidModel, s.Name, err)
	}
	dt, ok := fromONNX[elem]
	if !ok {
		name := onnxTypeNames[elem]
		if name == "" {
			name = fmt.Sprintf("element type %d", elem)
		}
		return s, fmt.Errorf("%q has ONNX type %s: %w", s.Name, name, models.ErrUnsupportedDataType)
	}
	s.DataType, s.ortType = dt, onnx.TensorElementDataType(elem)
	if shape != nil {
		s.Shape = []int64{}
		s.static = true
		err = pb.Walk(shape, func(f pb.Field) error {
			if f.Num != shapeDim || f.Type != pb.Bytes {
				return nil
			}
			d, param := int64(-1), ""
			err := pb.Walk(f.B, func(f pb.Field) error {
				switch {
				case f.Num == dimValue && f.Type == pb.Varint:
					d = int64(f.U)
				case f.Num == dimParam && f.Type == pb.Bytes:
					param = string(f.B)
				}
				return nil
			})
			if d < 0 || d > maxDeclaredDimension {
				d = -1 // dim_param, unknown, or nonsense: dynamic
				s.static = false
			} else {
				param = ""
			}
			s.Shape = append(s.Shape, d)
			s.params = append(s.params, param)
			return err
		})
		if err != nil {
			return s, fmt.Errorf("%w: %q shape: %w", ErrInvalidModel, s.Name, err)
		}
	}
	if s.static && dt != models.Bytes {
		// Outputs of this shape get preallocated: it must have a size.
		if _, err := models.ByteSize(dt, s.Shape); err != nil {
			return s, fmt.Errorf("%w: %q: %w", ErrInvalidModel, s.Name, err)
		}
	}
	return s, nil
}

func stringField(b []byte, num int32) (string, error) {
	v, err := bytesField(b, num)
	return string(v), err
}

func bytesField(b []byte, num int32) ([]byte, error) {
	var v []byte
	err := pb.Walk(b, func(f pb.Field) error {
		if f.Num == num && f.Type == pb.Bytes {
			v = f.B
		}
		return nil
	})
	return v, err
}

func signatureOf(inputs, outputs []ioSpec) models.Signature {
	sig := models.Signature{
		Inputs:  make([]models.TensorSpec, len(inputs)),
		Outputs: make([]models.TensorSpec, len(outputs)),
	}
	for i, s := range inputs {
		sig.Inputs[i] = cloneSpec(s.TensorSpec)
	}
	for i, s := range outputs {
		sig.Outputs[i] = cloneSpec(s.TensorSpec)
	}
	return sig
}

func cloneSpec(t models.TensorSpec) models.TensorSpec {
	if t.Shape != nil {
		t.Shape = append([]int64{}, t.Shape...)
	}
	return t
}
