package onnx

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// MarshalONNX validates the model and encodes it as an ONNX ModelProto.
// The bytes depend only on the model: the same model always gives the same
// file.
//
// Graph, for layer i (names prefixed "dense<i>."):
//
//	Gemm(h, dense<i>.W [In,Out], dense<i>.B [Out]) -> dense<i>.out
//	Relu|Sigmoid|Tanh|Softmax(axis=-1)             -> dense<i>.<activation>
//
// with no activation node for Identity; the last node writes the output
// tensor.
func (m *Model) MarshalONNX() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var graph []byte
	var inits [][]byte
	cur, last := m.inputName(), len(m.Layers)-1
	for i, l := range m.Layers {
		w, b := layerName(i, "W"), layerName(i, "B")
		inits = append(inits,
			encodeFloatTensor(w, []int64{int64(l.In), int64(l.Out)}, l.W),
			encodeFloatTensor(b, []int64{int64(l.Out)}, l.B))
		act := m.activation(i)
		out := layerName(i, "out")
		if i == last && act == Identity {
			out = m.outputName()
		}
		graph = appendBytesField(graph, fGraphNode,
			encodeNode(layerName(i, "gemm"), "Gemm", []string{cur, w, b}, []string{out}))
		cur = out
		if act == Identity {
			continue
		}
		out = layerName(i, string(act))
		if i == last {
			out = m.outputName()
		}
		graph = appendBytesField(graph, fGraphNode, activationNode(act, layerName(i, string(act)), cur, out))
		cur = out
	}
	graph = appendStringField(graph, fGraphName, m.graphName())
	for _, t := range inits {
		graph = appendBytesField(graph, fGraphInitializer, t)
	}
	graph = appendBytesField(graph, fGraphInput, encodeFloatValueInfo(m.inputName(), []int64{dynamicDim, int64(m.InSize())}))
	graph = appendBytesField(graph, fGraphOutput, encodeFloatValueInfo(m.outputName(), []int64{dynamicDim, int64(m.OutSize())}))

	var b []byte
	b = appendVarintField(b, fModelIRVersion, IRVersion)
	b = appendStringField(b, fModelProducerName, ProducerName)
	b = appendStringField(b, fModelProducerVersion, ProducerVersion)
	if m.Version != 0 {
		b = appendVarintField(b, fModelModelVersion, m.Version)
	}
	if m.Doc != "" {
		b = appendStringField(b, fModelDocString, m.Doc)
	}
	b = appendBytesField(b, fModelGraph, graph)
	b = appendBytesField(b, fModelOpsetImport, encodeOpset("", OpsetVersion))
	for _, kv := range m.metadata() {
		b = appendBytesField(b, fModelMetadataProps, encodeEntry(kv[0], kv[1]))
	}
	return b, nil
}

// activationNode encodes the node computing act. Adding an activation means
// a case here, one in applyActivation, and a constant.
func activationNode(act Activation, name, in, out string) []byte {
	io := func(op string, attrs ...attribute) []byte {
		return encodeNode(name, op, []string{in}, []string{out}, attrs...)
	}
	switch act {
	case ReLU:
		return io("Relu")
	case Sigmoid:
		return io("Sigmoid")
	case Tanh:
		return io("Tanh")
	case Softmax:
		return io("Softmax", attrInt("axis", -1))
	}
	panic("onnx: no node for activation " + string(act)) // Validate rejects it first
}

// metadata returns the petrel.* entries followed by Model.Metadata, sorted
// by key.
func (m *Model) metadata() [][2]string {
	kv := [][2]string{
		{MetaFamily, string(m.Family)},
		{MetaLayers, m.layerSizes()},
	}
	if len(m.Layers) > 1 {
		kv = append(kv, [2]string{MetaHidden, string(m.hidden())})
	}
	kv = append(kv, [2]string{MetaOutput, string(m.output())})
	for _, k := range slices.Sorted(maps.Keys(m.Metadata)) {
		kv = append(kv, [2]string{k, m.Metadata[k]})
	}
	return kv
}

// WriteFile writes the ONNX encoding of the model to path, replacing it
// atomically: the bytes go to a temporary file in the same directory that
// is renamed over path once complete.
func (m *Model) WriteFile(path string) error {
	b, err := m.MarshalONNX()
	if err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write model %q: %w", path, err)
	}
	return nil
}
