package golden

import "testing"

// FuzzParseGoldenFile: a pushed golden file never panics the parser, and
// what it accepts converts to tensors or fails with an error.
func FuzzParseGoldenFile(f *testing.F) {
	f.Add([]byte(`[{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,2]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1],"data":[3]}],"tolerance":0.001}]`))
	f.Add([]byte(`{"golden":[{"inputs":[{"name":"x","datatype":"INT64","shape":[2],"data":[1,2]}],"outputs":[{"name":"y","datatype":"BOOL","shape":[1],"data":[true]}]}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"golden":null}`))
	f.Add([]byte(`[{"inputs":[{"name":"x\",\"datatype","datatype":"FP32","shape":[1],"data":[1]}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		gs, err := ParseGoldenFile(data)
		if err != nil {
			return
		}
		for _, g := range gs {
			GoldenTensors(g.Inputs)
			GoldenTensors(g.Outputs)
		}
	})
}
