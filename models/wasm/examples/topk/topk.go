// Command topk is an example Petrel post-processing transform: it turns
// the FP32 tensor "probabilities" of shape [N, C] (or [C]) into the top-k
// classes with their names, as JSON:
//
//	{"predictions":[{"label":"Ankle boot","score":0.91},...]}          (N = 1)
//	{"predictions":[[{"label":...,"score":...},...],[...]]}            (N > 1)
//
// Class names default to Fashion-MNIST's ten (a class without a name is
// "class_<i>"); k defaults to 3. Both are set at link time:
// -ldflags "-X main.labels=a,b,c -X main.topK=5".
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

var (
	labels = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
	topK   = "3"
)

// errClient marks errors caused by the request (here: its Accept header).
var errClient = errors.New("bad request")

// transform renders the top-k predictions of the "probabilities" tensor.
func transform(names []string, k int, ts []guest.Tensor, accept string) (string, []byte, error) {
	return appendTransform(nil, nil, names, k, ts, accept)
}

// appendTransform is transform appending the body to dst and using idx as
// scratch, so that a guest reusing both across calls allocates nothing.
func appendTransform(dst []byte, idx []int, names []string, k int, ts []guest.Tensor, accept string) (string, []byte, error) {
	if !acceptsJSON(accept) {
		return "", nil, fmt.Errorf("%w: this model answers application/json, not %q", errClient, accept)
	}
	var p *guest.Tensor
	for i := range ts {
		if ts[i].Name == "probabilities" {
			p = &ts[i]
		}
	}
	if p == nil {
		return "", nil, errors.New(`no "probabilities" output tensor`)
	}
	if p.DataType != "FP32" {
		return "", nil, fmt.Errorf("probabilities are %s, want FP32", p.DataType)
	}
	var n, c int64
	switch len(p.Shape) {
	case 1:
		n, c = 1, p.Shape[0]
	case 2:
		n, c = p.Shape[0], p.Shape[1]
	default:
		return "", nil, fmt.Errorf("probabilities have shape %v, want [N, C] or [C]", p.Shape)
	}
	if n < 0 || c <= 0 || n > math.MaxInt32/4/c || int64(len(p.Data)) != 4*n*c {
		return "", nil, fmt.Errorf("probabilities: shape %v does not match %d data bytes", p.Shape, len(p.Data))
	}
	kk := min(int64(k), c)
	out := slices.Grow(dst, 32+int(n*kk)*48)
	out = append(out, `{"predictions":[`...)
	for row := int64(0); row < n; row++ {
		if row > 0 {
			out = append(out, ',')
		}
		if n > 1 {
			out = append(out, '[')
		}
		scores := p.Data[4*row*c : 4*(row+1)*c]
		idx = top(idx[:0], scores, int(kk))
		for j, i := range idx {
			if j > 0 {
				out = append(out, ',')
			}
			name := "class_" + strconv.Itoa(i)
			if i < len(names) {
				name = names[i]
			}
			out = append(out, `{"label":`...)
			out = strconv.AppendQuote(out, name)
			out = append(out, `,"score":`...)
			s := score(scores, i)
			if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
				out = append(out, "null"...)
			} else {
				out = strconv.AppendFloat(out, float64(s), 'g', -1, 32)
			}
			out = append(out, '}')
		}
		if n > 1 {
			out = append(out, ']')
		}
	}
	out = append(out, "]}"...)
	return "application/json", out, nil
}

func score(b []byte, i int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
}

// top returns the indices of the k largest scores, largest first (NaN
// ranks last, ties by lower index).
func top(idx []int, scores []byte, k int) []int {
	c := len(scores) / 4
	better := func(a, b int) bool {
		sa, sb := score(scores, a), score(scores, b)
		if sa != sa {
			return false
		}
		if sb != sb {
			return true
		}
		return sa > sb || (sa == sb && a < b)
	}
	for i := 0; i < c; i++ {
		if len(idx) < k {
			idx = append(idx, i)
		} else if better(i, idx[k-1]) {
			idx[k-1] = i
		} else {
			continue
		}
		for j := len(idx) - 1; j > 0 && better(idx[j], idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

func acceptsJSON(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		if i := strings.IndexByte(part, ';'); i >= 0 {
			part = part[:i]
		}
		mt := strings.ToLower(strings.TrimSpace(part))
		if mt == "*/*" || mt == "application/*" || mt == "application/json" {
			return true
		}
	}
	return false
}

func parseLabels(s string) []string { return strings.Split(s, ",") }

func parseK(s string) int {
	k, err := strconv.Atoi(s)
	if err != nil || k < 1 {
		return 3
	}
	return k
}

func main() {}
