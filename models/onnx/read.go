package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrNotPetrelModel wraps every error of Parse: the bytes are not an ONNX
// model of the shape this package writes.
var ErrNotPetrelModel = errors.New("not a model written by Petrel's ONNX writer")

// Field numbers Parse reads on top of those the writer emits (proto.go).
const (
	fGraphSparseInitializer protowire.Number = 15
	fNodeDomain             protowire.Number = 7
	fAttrF                  protowire.Number = 2
	fAttrRefAttrName        protowire.Number = 21
	fTensorSegment          protowire.Number = 3
	fTensorFloatData        protowire.Number = 4
	fTensorExternalData     protowire.Number = 13
	fTensorDataLocation     protowire.Number = 14
	attrTypeFloat           int64            = 1 // AttributeProto.AttributeType FLOAT
	maxParseLayers                           = 1 << 10
)

// Tensor data fields other than float_data and raw_data: a float
// initializer must not use them.
var otherTensorData = map[protowire.Number]string{
	5: "int32_data", 6: "string_data", 7: "int64_data", 10: "double_data", 11: "uint64_data",
}

// Parse reads back a file written by MarshalONNX (or WriteFile) into a
// Model with its weights, so that the node can train a copy of a model it
// serves.
//
// It accepts the graph the writer produces, and the same graph re-saved by
// other tools: node and graph names are not checked, initializers may hold
// their elements in raw_data or float_data, and unknown fields are
// skipped. What it checks is the function the file computes:
//
//   - metadata_props petrel.family, petrel.layers, petrel.output (and
//     petrel.hidden with two or more layers), which must describe the graph;
//   - one FP32 graph input [batch, in] and one FP32 output [batch, out];
//   - a chain of nodes in the default domain: per layer a Gemm of the
//     previous tensor with a float initializer W [In, Out] and B [Out]
//     (default alpha, beta, transA and transB), then optionally one of
//     Relu, Sigmoid, Tanh or Softmax over the last axis;
//   - finite weights, and a model that passes Validate.
//
// Names equal to the defaults come back empty (Input, OutputName, Name),
// so Parse(MarshalONNX(m)) has the same fields as a model built with the
// constructors. Every error wraps ErrNotPetrelModel; errors from Validate
// also wrap ErrInvalidModel. Parse never panics on bad input; the caller
// bounds the size of b.
func Parse(b []byte) (*Model, error) {
	mp, err := parseModelProto(b)
	if err != nil {
		return nil, err
	}
	return mp.assemble()
}

func notPetrel(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotPetrelModel, fmt.Sprintf(format, a...))
}

// Decoded protobuf messages: only what Parse needs.
type (
	modelProto struct {
		irVersion    int64
		hasIR        bool
		modelVersion int64
		doc          string
		graph        *graphProto
		opsets       map[string]int64
		meta         map[string]string
		metaOrder    []string
	}
	graphProto struct {
		name    string
		nodes   []nodeProto
		inits   []tensorProto
		inputs  []valueInfo
		outputs []valueInfo
	}
	nodeProto struct {
		inputs, outputs []string
		opType, domain  string
		attrs           []attrProto
	}
	attrProto struct {
		name       string
		typ        int64
		i          int64
		f          float32
		hasI, hasF bool
		other      bool // a field Parse does not interpret (s, t, g, lists, ...)
	}
	tensorProto struct {
		name     string
		dims     []int64
		dataType int64
		raw      []byte
		hasRaw   bool
		floats   []float32
		hasFloat bool
	}
	valueInfo struct {
		name     string
		elemType int64
		dims     []dim // nil when the type has no shape
		hasShape bool
	}
	dim struct {
		value    int64
		symbolic bool
	}
)

// fieldIter walks the fields of one message.
type fieldIter struct {
	b   []byte
	msg string // for errors
}

// next returns the next field's number, wire type and value bytes (the
// payload for BytesType, the raw encoding otherwise), or ok false at the
// end.
func (it *fieldIter) next() (num protowire.Number, typ protowire.Type, val []byte, ok bool, err error) {
	if len(it.b) == 0 {
		return 0, 0, nil, false, nil
	}
	num, typ, n := protowire.ConsumeTag(it.b)
	if n < 0 {
		return 0, 0, nil, false, notPetrel("%s: bad field tag: %v", it.msg, protowire.ParseError(n))
	}
	rest := it.b[n:]
	if typ == protowire.BytesType {
		v, m := protowire.ConsumeBytes(rest)
		if m < 0 {
			return 0, 0, nil, false, notPetrel("%s: field %d: %v", it.msg, num, protowire.ParseError(m))
		}
		it.b = rest[m:]
		return num, typ, v, true, nil
	}
	m := protowire.ConsumeFieldValue(num, typ, rest)
	if m < 0 {
		return 0, 0, nil, false, notPetrel("%s: field %d: %v", it.msg, num, protowire.ParseError(m))
	}
	it.b = rest[m:]
	return num, typ, rest[:m], true, nil
}

func wantType(msg string, num protowire.Number, got, want protowire.Type) error {
	if got != want {
		return notPetrel("%s: field %d has wire type %d, want %d", msg, num, got, want)
	}
	return nil
}

// varint decodes a VarintType value returned by next.
func varint(msg string, num protowire.Number, typ protowire.Type, val []byte) (int64, error) {
	if err := wantType(msg, num, typ, protowire.VarintType); err != nil {
		return 0, err
	}
	v, n := protowire.ConsumeVarint(val)
	if n < 0 {
		return 0, notPetrel("%s: field %d: %v", msg, num, protowire.ParseError(n))
	}
	return int64(v), nil
}

func str(msg string, num protowire.Number, typ protowire.Type, val []byte) (string, error) {
	if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
		return "", err
	}
	return string(val), nil
}

func parseModelProto(b []byte) (*modelProto, error) {
	const msg = "ModelProto"
	mp := &modelProto{opsets: map[string]int64{}, meta: map[string]string{}}
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil || !ok {
			if err != nil {
				return nil, err
			}
			break
		}
		switch num {
		case fModelIRVersion:
			if mp.irVersion, err = varint(msg, num, typ, val); err != nil {
				return nil, err
			}
			mp.hasIR = true
		case fModelModelVersion:
			if mp.modelVersion, err = varint(msg, num, typ, val); err != nil {
				return nil, err
			}
		case fModelDocString:
			if mp.doc, err = str(msg, num, typ, val); err != nil {
				return nil, err
			}
		case fModelGraph:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return nil, err
			}
			if mp.graph != nil {
				return nil, notPetrel("ModelProto has more than one graph")
			}
			if mp.graph, err = parseGraph(val); err != nil {
				return nil, err
			}
		case fModelOpsetImport:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return nil, err
			}
			domain, version, err := parseOpset(val)
			if err != nil {
				return nil, err
			}
			if domain == "ai.onnx" {
				domain = ""
			}
			if _, dup := mp.opsets[domain]; dup {
				return nil, notPetrel("opset of domain %q imported twice", domain)
			}
			mp.opsets[domain] = version
		case fModelMetadataProps:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return nil, err
			}
			k, v, err := parseEntry(val)
			if err != nil {
				return nil, err
			}
			if _, dup := mp.meta[k]; dup {
				return nil, notPetrel("metadata key %q appears twice", k)
			}
			mp.meta[k] = v
			mp.metaOrder = append(mp.metaOrder, k)
		default: // producer, domain, training info, functions...: not needed
			if num == fModelProducerName || num == fModelProducerVersion {
				if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
					return nil, err
				}
			}
		}
	}
	return mp, nil
}

func parseOpset(b []byte) (domain string, version int64, err error) {
	const msg = "OperatorSetIdProto"
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return "", 0, err
		}
		if !ok {
			return domain, version, nil
		}
		switch num {
		case fOpsetDomain:
			if domain, err = str(msg, num, typ, val); err != nil {
				return "", 0, err
			}
		case fOpsetVersion:
			if version, err = varint(msg, num, typ, val); err != nil {
				return "", 0, err
			}
		}
	}
}

func parseEntry(b []byte) (key, value string, err error) {
	const msg = "StringStringEntryProto"
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return "", "", err
		}
		if !ok {
			return key, value, nil
		}
		switch num {
		case fEntryKey:
			if key, err = str(msg, num, typ, val); err != nil {
				return "", "", err
			}
		case fEntryValue:
			if value, err = str(msg, num, typ, val); err != nil {
				return "", "", err
			}
		}
	}
}

func parseGraph(b []byte) (*graphProto, error) {
	const msg = "GraphProto"
	g := &graphProto{}
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return g, nil
		}
		switch num {
		case fGraphName:
			if g.name, err = str(msg, num, typ, val); err != nil {
				return nil, err
			}
		case fGraphNode, fGraphInitializer, fGraphInput, fGraphOutput:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return nil, err
			}
			switch num {
			case fGraphNode:
				if len(g.nodes) >= 2*maxParseLayers {
					return nil, notPetrel("graph has more than %d nodes", 2*maxParseLayers)
				}
				n, err := parseNode(val)
				if err != nil {
					return nil, err
				}
				g.nodes = append(g.nodes, n)
			case fGraphInitializer:
				if len(g.inits) >= 2*maxParseLayers {
					return nil, notPetrel("graph has more than %d initializers", 2*maxParseLayers)
				}
				t, err := parseTensor(val)
				if err != nil {
					return nil, err
				}
				g.inits = append(g.inits, t)
			case fGraphInput, fGraphOutput:
				if len(g.inputs)+len(g.outputs) >= 4*maxParseLayers {
					return nil, notPetrel("graph has more than %d inputs and outputs", 4*maxParseLayers)
				}
				vi, err := parseValueInfo(val)
				if err != nil {
					return nil, err
				}
				if num == fGraphInput {
					g.inputs = append(g.inputs, vi)
				} else {
					g.outputs = append(g.outputs, vi)
				}
			}
		case fGraphSparseInitializer:
			return nil, notPetrel("graph has sparse initializers")
		}
	}
}

func parseNode(b []byte) (nodeProto, error) {
	const msg = "NodeProto"
	var n nodeProto
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return n, err
		}
		if !ok {
			return n, nil
		}
		switch num {
		case fNodeInput, fNodeOutput:
			s, err := str(msg, num, typ, val)
			if err != nil {
				return n, err
			}
			if len(n.inputs)+len(n.outputs) >= 16 {
				return n, notPetrel("node has more than 16 inputs and outputs")
			}
			if num == fNodeInput {
				n.inputs = append(n.inputs, s)
			} else {
				n.outputs = append(n.outputs, s)
			}
		case fNodeOpType:
			if n.opType, err = str(msg, num, typ, val); err != nil {
				return n, err
			}
		case fNodeDomain:
			if n.domain, err = str(msg, num, typ, val); err != nil {
				return n, err
			}
		case fNodeAttribute:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return n, err
			}
			if len(n.attrs) >= 16 {
				return n, notPetrel("node has more than 16 attributes")
			}
			a, err := parseAttr(val)
			if err != nil {
				return n, err
			}
			n.attrs = append(n.attrs, a)
		}
	}
}

func parseAttr(b []byte) (attrProto, error) {
	const msg = "AttributeProto"
	var a attrProto
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return a, err
		}
		if !ok {
			return a, nil
		}
		switch num {
		case fAttrName:
			if a.name, err = str(msg, num, typ, val); err != nil {
				return a, err
			}
		case fAttrF:
			if err := wantType(msg, num, typ, protowire.Fixed32Type); err != nil {
				return a, err
			}
			v, _ := protowire.ConsumeFixed32(val)
			a.f, a.hasF = math.Float32frombits(v), true
		case fAttrI:
			if a.i, err = varint(msg, num, typ, val); err != nil {
				return a, err
			}
			a.hasI = true
		case fAttrType:
			if a.typ, err = varint(msg, num, typ, val); err != nil {
				return a, err
			}
		case fAttrRefAttrName:
			return a, notPetrel("attribute refers to a function attribute")
		case 13: // doc_string
		default:
			a.other = true
		}
	}
}

func parseTensor(b []byte) (tensorProto, error) {
	const msg = "TensorProto"
	var t tensorProto
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return t, err
		}
		if !ok {
			return t, nil
		}
		switch num {
		case fTensorDims:
			// proto2 "repeated int64 dims = 1": unpacked, but parsers
			// accept the packed form too.
			if typ == protowire.BytesType {
				for len(val) > 0 {
					v, n := protowire.ConsumeVarint(val)
					if n < 0 {
						return t, notPetrel("%s dims: %v", msg, protowire.ParseError(n))
					}
					val = val[n:]
					if len(t.dims) >= 8 {
						return t, notPetrel("initializer has more than 8 dimensions")
					}
					t.dims = append(t.dims, int64(v))
				}
				continue
			}
			v, err := varint(msg, num, typ, val)
			if err != nil {
				return t, err
			}
			if len(t.dims) >= 8 {
				return t, notPetrel("initializer has more than 8 dimensions")
			}
			t.dims = append(t.dims, v)
		case fTensorDataType:
			if t.dataType, err = varint(msg, num, typ, val); err != nil {
				return t, err
			}
		case fTensorName:
			if t.name, err = str(msg, num, typ, val); err != nil {
				return t, err
			}
		case fTensorRawData:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return t, err
			}
			t.raw, t.hasRaw = val, true
		case fTensorFloatData:
			t.hasFloat = true
			if typ == protowire.BytesType { // packed
				if len(val)%4 != 0 {
					return t, notPetrel("%s float_data: %d bytes is not a whole number of floats", msg, len(val))
				}
				for i := 0; i < len(val); i += 4 {
					t.floats = append(t.floats, math.Float32frombits(binary.LittleEndian.Uint32(val[i:])))
				}
				continue
			}
			if err := wantType(msg, num, typ, protowire.Fixed32Type); err != nil {
				return t, err
			}
			v, _ := protowire.ConsumeFixed32(val)
			t.floats = append(t.floats, math.Float32frombits(v))
		case fTensorSegment:
			return t, notPetrel("initializer %q is segmented", t.name)
		case fTensorExternalData:
			return t, notPetrel("initializer %q has external data", t.name)
		case fTensorDataLocation:
			loc, err := varint(msg, num, typ, val)
			if err != nil {
				return t, err
			}
			if loc != 0 {
				return t, notPetrel("initializer %q has external data", t.name)
			}
		default:
			if field, ok := otherTensorData[num]; ok {
				return t, notPetrel("initializer %q has %s", t.name, field)
			}
		}
	}
}

func parseValueInfo(b []byte) (valueInfo, error) {
	const msg = "ValueInfoProto"
	var vi valueInfo
	it := fieldIter{b: b, msg: msg}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil {
			return vi, err
		}
		if !ok {
			return vi, nil
		}
		switch num {
		case fValueInfoName:
			if vi.name, err = str(msg, num, typ, val); err != nil {
				return vi, err
			}
		case fValueInfoType:
			if err := wantType(msg, num, typ, protowire.BytesType); err != nil {
				return vi, err
			}
			if err := parseTypeProto(val, &vi); err != nil {
				return vi, err
			}
		}
	}
}

// parseTypeProto reads TypeProto.tensor_type; any other kind of type
// (sequence, map, ...) leaves elemType 0, which assemble rejects.
func parseTypeProto(b []byte, vi *valueInfo) error {
	it := fieldIter{b: b, msg: "TypeProto"}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil || !ok {
			return err
		}
		if num != fTypeTensorType {
			continue
		}
		if err := wantType("TypeProto", num, typ, protowire.BytesType); err != nil {
			return err
		}
		tt := fieldIter{b: val, msg: "TypeProto.Tensor"}
		for {
			num, typ, val, ok, err := tt.next()
			if err != nil || !ok {
				if err != nil {
					return err
				}
				break
			}
			switch num {
			case fTensorTypeElem:
				if vi.elemType, err = varint(tt.msg, num, typ, val); err != nil {
					return err
				}
			case fTensorTypeShape:
				if err := wantType(tt.msg, num, typ, protowire.BytesType); err != nil {
					return err
				}
				vi.hasShape = true
				vi.dims = vi.dims[:0]
				if err := parseShape(val, vi); err != nil {
					return err
				}
			}
		}
	}
}

func parseShape(b []byte, vi *valueInfo) error {
	it := fieldIter{b: b, msg: "TensorShapeProto"}
	for {
		num, typ, val, ok, err := it.next()
		if err != nil || !ok {
			return err
		}
		if num != fShapeDim {
			continue
		}
		if err := wantType(it.msg, num, typ, protowire.BytesType); err != nil {
			return err
		}
		if len(vi.dims) >= 8 {
			return notPetrel("tensor %q has more than 8 dimensions", vi.name)
		}
		d := dim{value: -1, symbolic: true} // a dimension with neither field is unknown
		dt := fieldIter{b: val, msg: "TensorShapeProto.Dimension"}
		for {
			num, typ, val, ok, err := dt.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			switch num {
			case fDimValue:
				v, err := varint(dt.msg, num, typ, val)
				if err != nil {
					return err
				}
				d = dim{value: v}
			case fDimParam:
				if _, err := str(dt.msg, num, typ, val); err != nil {
					return err
				}
				d = dim{value: -1, symbolic: true}
			}
		}
		vi.dims = append(vi.dims, d)
	}
}

// floatData returns the elements of a float initializer of n elements.
func (t *tensorProto) floatData(n int) ([]float32, error) {
	if t.dataType != tensorFloat {
		return nil, notPetrel("initializer %q has data type %d, want FLOAT (1)", t.name, t.dataType)
	}
	switch {
	case t.hasRaw && t.hasFloat:
		return nil, notPetrel("initializer %q has both raw_data and float_data", t.name)
	case t.hasRaw:
		if len(t.raw) != 4*n {
			return nil, notPetrel("initializer %q has %d bytes of raw_data, want %d for %d floats", t.name, len(t.raw), 4*n, n)
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.raw[4*i:]))
		}
		return out, nil
	case t.hasFloat || n == 0:
		if len(t.floats) != n {
			return nil, notPetrel("initializer %q has %d floats, want %d", t.name, len(t.floats), n)
		}
		return append([]float32(nil), t.floats...), nil
	}
	return nil, notPetrel("initializer %q has no data", t.name)
}

// checkFloat2D checks a graph input or output: FLOAT, rank 2, a fixed
// second dimension that is returned.
func checkFloat2D(kind string, vi valueInfo) (int, error) {
	if vi.elemType != tensorFloat {
		return 0, notPetrel("graph %s %q has element type %d, want FLOAT (1)", kind, vi.name, vi.elemType)
	}
	if !vi.hasShape || len(vi.dims) != 2 {
		return 0, notPetrel("graph %s %q is not of rank 2", kind, vi.name)
	}
	d := vi.dims[1]
	if d.symbolic || d.value < 1 || d.value > math.MaxInt32 {
		return 0, notPetrel("graph %s %q: second dimension is not a fixed size", kind, vi.name)
	}
	return int(d.value), nil
}

// gemmDefaults reports whether a Gemm node's attributes all have their
// default values (alpha = beta = 1, no transposes).
func gemmDefaults(n *nodeProto) error {
	for _, a := range n.attrs {
		switch {
		case a.other:
			return notPetrel("Gemm attribute %q has a value kind Parse does not read", a.name)
		case (a.name == "alpha" || a.name == "beta") && a.hasF && !a.hasI && a.f == 1:
		case (a.name == "transA" || a.name == "transB") && a.hasI && !a.hasF && a.i == 0:
		default:
			return notPetrel("Gemm attribute %q is not its default", a.name)
		}
	}
	return nil
}

// activationOf maps an activation node to its Activation, checking its
// attributes.
func activationOf(n *nodeProto) (Activation, error) {
	var act Activation
	switch n.opType {
	case "Relu":
		act = ReLU
	case "Sigmoid":
		act = Sigmoid
	case "Tanh":
		act = Tanh
	case "Softmax":
		act = Softmax
	default:
		return "", notPetrel("node %q is not a Gemm or an activation Petrel writes", n.opType)
	}
	for _, a := range n.attrs {
		// Softmax over the last axis of a rank-2 tensor: axis -1 or 1.
		if act == Softmax && a.name == "axis" && a.hasI && !a.hasF && !a.other && (a.i == -1 || a.i == 1) {
			continue
		}
		return "", notPetrel("%s attribute %q is not one Petrel writes", n.opType, a.name)
	}
	if len(n.inputs) != 1 || len(n.outputs) != 1 {
		return "", notPetrel("%s node has %d inputs and %d outputs, want 1 and 1", n.opType, len(n.inputs), len(n.outputs))
	}
	return act, nil
}

// assemble checks the decoded graph is a chain of dense layers that
// matches the petrel.* metadata and builds the Model.
func (mp *modelProto) assemble() (*Model, error) {
	if !mp.hasIR {
		return nil, notPetrel("no ir_version")
	}
	if mp.graph == nil {
		return nil, notPetrel("no graph")
	}
	if v, ok := mp.opsets[""]; !ok || v < 7 {
		return nil, notPetrel("no import of the default (ai.onnx) opset at version 7 or later")
	}
	family, ok := mp.meta[MetaFamily]
	if !ok {
		return nil, notPetrel("no %s metadata", MetaFamily)
	}
	g := mp.graph
	inits := make(map[string]*tensorProto, len(g.inits))
	for i := range g.inits {
		t := &g.inits[i]
		if _, dup := inits[t.name]; dup {
			return nil, notPetrel("initializer %q appears twice", t.name)
		}
		inits[t.name] = t
	}
	var inputs []valueInfo
	for _, in := range g.inputs { // IR < 4 lists initializers as inputs too
		if _, isInit := inits[in.name]; !isInit {
			inputs = append(inputs, in)
		}
	}
	if len(inputs) != 1 {
		return nil, notPetrel("graph has %d inputs, want 1", len(inputs))
	}
	if len(g.outputs) != 1 {
		return nil, notPetrel("graph has %d outputs, want 1", len(g.outputs))
	}
	inSize, err := checkFloat2D("input", inputs[0])
	if err != nil {
		return nil, err
	}
	outSize, err := checkFloat2D("output", g.outputs[0])
	if err != nil {
		return nil, err
	}

	m := &Model{Family: Family(family), Doc: mp.doc, Version: mp.modelVersion}
	var acts []Activation
	cur, width := inputs[0].name, inSize
	used := map[string]bool{}
	for i := 0; i < len(g.nodes); i++ {
		n := &g.nodes[i]
		if n.domain != "" && n.domain != "ai.onnx" {
			return nil, notPetrel("node %q is in domain %q", n.opType, n.domain)
		}
		if n.opType != "Gemm" {
			return nil, notPetrel("node %d is %s where a Gemm was expected", i, n.opType)
		}
		if len(m.Layers) >= maxParseLayers {
			return nil, notPetrel("more than %d layers", maxParseLayers)
		}
		if len(n.inputs) != 3 || len(n.outputs) != 1 {
			return nil, notPetrel("Gemm node %d has %d inputs and %d outputs, want 3 and 1", i, len(n.inputs), len(n.outputs))
		}
		if n.inputs[0] != cur {
			return nil, notPetrel("Gemm node %d reads %q, not the previous layer's %q", i, n.inputs[0], cur)
		}
		if err := gemmDefaults(n); err != nil {
			return nil, err
		}
		wt, bt := inits[n.inputs[1]], inits[n.inputs[2]]
		if wt == nil || bt == nil || used[n.inputs[1]] || used[n.inputs[2]] || n.inputs[1] == n.inputs[2] {
			return nil, notPetrel("Gemm node %d: weights and bias must be distinct initializers of their own", i)
		}
		used[n.inputs[1]], used[n.inputs[2]] = true, true
		if len(wt.dims) != 2 || wt.dims[0] != int64(width) || wt.dims[1] < 1 || wt.dims[1] > math.MaxInt32 {
			return nil, notPetrel("layer %d: weights %q have shape %v, want [%d, out]", len(m.Layers), wt.name, wt.dims, width)
		}
		out := int(wt.dims[1])
		if width > math.MaxInt32/out {
			return nil, notPetrel("layer %d: %dx%d weights are too many", len(m.Layers), width, out)
		}
		if len(bt.dims) != 1 || bt.dims[0] != int64(out) {
			return nil, notPetrel("layer %d: bias %q has shape %v, want [%d]", len(m.Layers), bt.name, bt.dims, out)
		}
		l := Dense{In: width, Out: out}
		if l.W, err = wt.floatData(width * out); err != nil {
			return nil, err
		}
		if l.B, err = bt.floatData(out); err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, l)
		cur, width = n.outputs[0], out
		act := Identity
		if i+1 < len(g.nodes) && g.nodes[i+1].opType != "Gemm" {
			next := &g.nodes[i+1]
			if next.domain != "" && next.domain != "ai.onnx" {
				return nil, notPetrel("node %q is in domain %q", next.opType, next.domain)
			}
			if act, err = activationOf(next); err != nil {
				return nil, err
			}
			if next.inputs[0] != cur {
				return nil, notPetrel("%s node reads %q, not the Gemm's output %q", next.opType, next.inputs[0], cur)
			}
			cur = next.outputs[0]
			i++
		}
		acts = append(acts, act)
	}
	if len(m.Layers) == 0 {
		return nil, notPetrel("graph has no Gemm nodes")
	}
	if len(used) != len(inits) {
		return nil, notPetrel("graph has %d initializers that no layer uses", len(inits)-len(used))
	}
	if cur != g.outputs[0].name {
		return nil, notPetrel("the last layer writes %q, not the graph output %q", cur, g.outputs[0].name)
	}
	if width != outSize {
		return nil, notPetrel("graph output %q has width %d, the last layer %d", cur, outSize, width)
	}
	m.Output = acts[len(acts)-1]
	for i, a := range acts[:len(acts)-1] {
		if a != acts[0] {
			return nil, notPetrel("hidden layers have different activations (%s at layer 0, %s at layer %d)", acts[0], a, i)
		}
	}
	if len(acts) > 1 {
		m.Hidden = acts[0]
	}
	if err := mp.checkMeta(m); err != nil {
		return nil, err
	}
	m.Input = inputs[0].name
	if m.Input == DefaultInput {
		m.Input = ""
	}
	m.OutputName = g.outputs[0].name
	if m.OutputName == DefaultOutputName(m.Family, m.Output) {
		m.OutputName = ""
	}
	m.Name = g.name
	if m.Name == string(m.Family) {
		m.Name = ""
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotPetrelModel, err)
	}
	return m, nil
}

// checkMeta compares the petrel.* metadata with the graph and copies the
// other entries into m.Metadata.
func (mp *modelProto) checkMeta(m *Model) error {
	if got, want := mp.meta[MetaLayers], m.layerSizes(); got != want {
		return notPetrel("%s is %q but the graph's layers are %q", MetaLayers, got, want)
	}
	out, ok := mp.meta[MetaOutput]
	if !ok || Activation(out) != m.output() {
		return notPetrel("%s is %q but the graph's output activation is %q", MetaOutput, out, m.output())
	}
	hidden, ok := mp.meta[MetaHidden]
	switch {
	case len(m.Layers) > 1 && (!ok || Activation(hidden) != m.hidden()):
		return notPetrel("%s is %q but the graph's hidden activation is %q", MetaHidden, hidden, m.hidden())
	case len(m.Layers) == 1 && ok:
		return notPetrel("%s is set on a model with one layer", MetaHidden)
	}
	for _, k := range mp.metaOrder {
		switch k {
		case MetaFamily, MetaLayers, MetaHidden, MetaOutput:
			continue
		}
		if m.Metadata == nil {
			m.Metadata = map[string]string{}
		}
		m.Metadata[k] = mp.meta[k]
	}
	return nil
}
