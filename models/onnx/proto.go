package onnx

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx/onnx.proto (proto2, package onnx). Only the
// fields this writer emits are listed; they are stable across IR versions.
const (
	// ModelProto
	fModelIRVersion       protowire.Number = 1
	fModelProducerName    protowire.Number = 2
	fModelProducerVersion protowire.Number = 3
	fModelModelVersion    protowire.Number = 5
	fModelDocString       protowire.Number = 6
	fModelGraph           protowire.Number = 7
	fModelOpsetImport     protowire.Number = 8
	fModelMetadataProps   protowire.Number = 14

	// OperatorSetIdProto
	fOpsetDomain  protowire.Number = 1
	fOpsetVersion protowire.Number = 2

	// StringStringEntryProto
	fEntryKey   protowire.Number = 1
	fEntryValue protowire.Number = 2

	// GraphProto
	fGraphNode        protowire.Number = 1
	fGraphName        protowire.Number = 2
	fGraphInitializer protowire.Number = 5
	fGraphInput       protowire.Number = 11
	fGraphOutput      protowire.Number = 12

	// NodeProto
	fNodeInput     protowire.Number = 1
	fNodeOutput    protowire.Number = 2
	fNodeName      protowire.Number = 3
	fNodeOpType    protowire.Number = 4
	fNodeAttribute protowire.Number = 5

	// AttributeProto
	fAttrName protowire.Number = 1
	fAttrI    protowire.Number = 3
	fAttrType protowire.Number = 20

	// TensorProto
	fTensorDims     protowire.Number = 1
	fTensorDataType protowire.Number = 2
	fTensorName     protowire.Number = 8
	fTensorRawData  protowire.Number = 9

	// ValueInfoProto
	fValueInfoName protowire.Number = 1
	fValueInfoType protowire.Number = 2

	// TypeProto, TypeProto.Tensor, TensorShapeProto and its Dimension
	fTypeTensorType  protowire.Number = 1
	fTensorTypeElem  protowire.Number = 1
	fTensorTypeShape protowire.Number = 2
	fShapeDim        protowire.Number = 1
	fDimValue        protowire.Number = 1
	fDimParam        protowire.Number = 2
)

// Enum values from onnx.proto.
const (
	tensorFloat int64 = 1 // TensorProto.DataType FLOAT
	attrTypeInt int64 = 2 // AttributeProto.AttributeType INT
)

// dynamicDim in a shape is written as the symbolic dimension batchDim.
const (
	dynamicDim int64 = -1
	batchDim         = "batch"
)

func appendVarintField(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// encodeOpset encodes an OperatorSetIdProto; domain "" is the default
// ai.onnx domain and is left out.
func encodeOpset(domain string, version int64) []byte {
	var b []byte
	if domain != "" {
		b = appendStringField(b, fOpsetDomain, domain)
	}
	return appendVarintField(b, fOpsetVersion, version)
}

func encodeEntry(key, value string) []byte {
	b := appendStringField(nil, fEntryKey, key)
	return appendStringField(b, fEntryValue, value)
}

// encodeFloatTensor encodes a FLOAT TensorProto with its elements in
// raw_data as little-endian IEEE 754 float32, row-major.
func encodeFloatTensor(name string, dims []int64, data []float32) []byte {
	var b []byte
	for _, d := range dims { // proto2 "repeated int64 dims = 1" is unpacked
		b = appendVarintField(b, fTensorDims, d)
	}
	b = appendVarintField(b, fTensorDataType, tensorFloat)
	b = appendStringField(b, fTensorName, name)
	raw := make([]byte, 4*len(data))
	for i, f := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return appendBytesField(b, fTensorRawData, raw)
}

// encodeFloatValueInfo encodes a ValueInfoProto for a FLOAT tensor. A
// dimension of -1 is written as the symbolic dimension "batch".
func encodeFloatValueInfo(name string, dims []int64) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		if d == dynamicDim {
			dim = appendStringField(nil, fDimParam, batchDim)
		} else {
			dim = appendVarintField(nil, fDimValue, d)
		}
		shape = appendBytesField(shape, fShapeDim, dim)
	}
	tensor := appendVarintField(nil, fTensorTypeElem, tensorFloat)
	tensor = appendBytesField(tensor, fTensorTypeShape, shape)
	typ := appendBytesField(nil, fTypeTensorType, tensor)
	b := appendStringField(nil, fValueInfoName, name)
	return appendBytesField(b, fValueInfoType, typ)
}

// attribute is one encoded AttributeProto.
type attribute []byte

func attrInt(name string, v int64) attribute {
	b := appendStringField(nil, fAttrName, name)
	b = appendVarintField(b, fAttrI, v)
	return appendVarintField(b, fAttrType, attrTypeInt)
}

// encodeNode encodes a NodeProto in the default (ai.onnx) domain.
func encodeNode(name, opType string, inputs, outputs []string, attrs ...attribute) []byte {
	var b []byte
	for _, in := range inputs {
		b = appendStringField(b, fNodeInput, in)
	}
	for _, out := range outputs {
		b = appendStringField(b, fNodeOutput, out)
	}
	b = appendStringField(b, fNodeName, name)
	b = appendStringField(b, fNodeOpType, opType)
	for _, a := range attrs {
		b = appendBytesField(b, fNodeAttribute, a)
	}
	return b
}
