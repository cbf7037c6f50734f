// Command topk is an example Petrel post-processing transform: it turns
// the FP32 tensor "probabilities" of shape [N, C] (or [C]) into the top-k
// classes with their names, as JSON:
//
//	{"predictions":[{"label":"Ankle boot","score":0.91},...]}          (N = 1)
//	{"predictions":[[{"label":...,"score":...},...],[...]]}            (N > 1)
//
// Scores in [0.0001, 1] are written with at most six decimals (0.5,
// 0.123457), others in their shortest form, NaN and infinities as null.
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

// A renderer turns "probabilities" into the response body. It keeps the
// labels quoted for JSON and its buffers from one call to the next.
//
// The code is written for a wasm guest run with interruption checks (the
// node's deadline per call): there every function call and every loop
// iteration costs a check, so the hot path avoids strconv's float
// formatting and quoting, allocation and closures.
type renderer struct {
	quoted [][]byte // the labels, quoted as JSON strings
	k      int
	idx    []int
	body   []byte
}

func newRenderer(names []string, k int) *renderer {
	r := &renderer{k: k, idx: make([]int, 0, k)}
	for _, n := range names {
		r.quoted = append(r.quoted, strconv.AppendQuote(nil, n))
	}
	return r
}

// transform renders the top-k predictions of the "probabilities" tensor.
func transform(names []string, k int, ts []guest.Tensor, accept string) (string, []byte, error) {
	return newRenderer(names, k).render(ts, accept)
}

// render renders the top-k predictions of the "probabilities" tensor into
// r's body buffer (valid until the next call).
func (r *renderer) render(ts []guest.Tensor, accept string) (string, []byte, error) {
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
	kk := min(int64(r.k), c)
	out := slices.Grow(r.body[:0], 32+int(n*kk)*48)
	out = append(out, `{"predictions":[`...)
	for row := int64(0); row < n; row++ {
		if row > 0 {
			out = append(out, ',')
		}
		if n > 1 {
			out = append(out, '[')
		}
		scores := p.Data[4*row*c : 4*(row+1)*c]
		r.idx = top(r.idx[:0], scores, int(kk))
		for j, i := range r.idx {
			if j > 0 {
				out = append(out, `,{"label":`...)
			} else {
				out = append(out, `{"label":`...)
			}
			if i < len(r.quoted) {
				out = append(out, r.quoted[i]...)
			} else {
				out = append(out, `"class_`...)
				out = strconv.AppendInt(out, int64(i), 10)
				out = append(out, '"')
			}
			out = append(out, `,"score":`...)
			out = appendScore(out, score(scores, i))
			out = append(out, '}')
		}
		if n > 1 {
			out = append(out, ']')
		}
	}
	out = append(out, "]}"...)
	r.body = out
	return "application/json", out, nil
}

// appendScore writes a score as a JSON number: scores in [1e-4, 1] (the
// usual probabilities) with at most six decimals, others in strconv's
// shortest form; NaN and infinities, which JSON lacks, as null.
func appendScore(out []byte, s float32) []byte {
	if s != s || math.IsInf(float64(s), 0) {
		return append(out, "null"...)
	}
	if s < 1e-4 || s > 1 {
		return strconv.AppendFloat(out, float64(s), 'g', -1, 32)
	}
	u := uint32(float64(s)*1e6 + 0.5) // 100..1000000
	if u >= 1000000 {
		return append(out, '1')
	}
	// "0." and six digits, then trailing zeros dropped.
	d := [8]byte{'0', '.',
		byte('0' + u/100000), byte('0' + u/10000%10), byte('0' + u/1000%10),
		byte('0' + u/100%10), byte('0' + u/10%10), byte('0' + u%10)}
	end := 8
	for d[end-1] == '0' {
		end--
	}
	return append(out, d[:end]...)
}

func score(b []byte, i int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
}

// top returns the indices of the k largest scores, largest first (NaN
// ranks last, ties by lower index).
func top(idx []int, scores []byte, k int) []int {
	c := len(scores) / 4
	for i := 0; i < c; i++ {
		s := score(scores, i)
		if len(idx) < k {
			idx = append(idx, i)
		} else if !above(s, i, score(scores, idx[k-1]), idx[k-1]) {
			continue
		} else {
			idx[k-1] = i
		}
		for j := len(idx) - 1; j > 0 && above(s, i, score(scores, idx[j-1]), idx[j-1]); j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	return idx
}

// above reports whether class a with score sa ranks above class b with
// score sb.
func above(sa float32, a int, sb float32, b int) bool {
	if sa != sa {
		return false
	}
	if sb != sb {
		return true
	}
	return sa > sb || (sa == sb && a < b)
}

// acceptsJSON reports whether an Accept header admits application/json:
// empty, or a media range of */*, application/* or application/json
// (case-insensitive, parameters ignored).
func acceptsJSON(accept string) bool {
	empty := true
	for len(accept) > 0 {
		part := accept
		if i := strings.IndexByte(accept, ','); i >= 0 {
			part, accept = accept[:i], accept[i+1:]
		} else {
			accept = ""
		}
		if i := strings.IndexByte(part, ';'); i >= 0 {
			part = part[:i]
		}
		mt := strings.TrimSpace(part)
		if mt != "" {
			empty = false
		}
		if mt == "*/*" || strings.EqualFold(mt, "application/*") || strings.EqualFold(mt, "application/json") {
			return true
		}
	}
	return empty
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
