package oip

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// decodeBoth decodes body with and without the FP32 fast path and fails
// unless the results and errors are identical.
func decodeBoth(t *testing.T, body []byte) {
	t.Helper()
	r1, err1 := DecodeRequest(body, -1, fuzzLimits)
	noFlatF32 = true
	r2, err2 := DecodeRequest(body, -1, fuzzLimits)
	noFlatF32 = false
	if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
		t.Fatalf("%q:\nfast error    %v\ngeneral error %v", body, err1, err2)
	}
	if err1 != nil {
		return
	}
	for i := range r1.Inputs {
		if !bytes.Equal(r1.Inputs[i].Data, r2.Inputs[i].Data) {
			t.Fatalf("%q: fast data % x, general data % x", body, r1.Inputs[i].Data, r2.Inputs[i].Data)
		}
	}
}

func f32Body(n int, data string) []byte {
	return []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strconv.Itoa(n) + `],"data":` + data + `}]}`)
}

var f32Atoms = []string{
	"0", "-0", "0.0", "-0.0", "1", "-1", "0.1", "1e5", "1E5", "1e+5", "1e-5", "1e", "1e+", "1.", "1.e3", ".5",
	"01", "00", "-", "--1", "-a", "+1", "1.5e38", "3.4028235e38", "3.4028236e38", "1e39", "-1e39", "1e-45",
	"1.4e-45", "1.17549435e-38", "1.1754942e-38", "1e-38", "0.000000000000000000000001", "123456789012345678901",
	"1234567890123456789", "12345678901234567890", "0.1234567890123456789", "0.12345678901234567891",
	"0.00000000000000000000000000000000000000000001", "1e0001", "1e100000", "1e-100000", "16777217", "0.3",
	"33554431", "8388609.5", "NaN", "Infinity", "-Infinity", "null", "true", `"1"`, "[1]", "[]", "{}",
	"1.00000000", "12345678.12345678", "0.12345678", "7.038531e-26", "9.999999e-39", "1e-39", "1x", "1 2",
}

var f32Seps = []string{",", ", ", " ,", "\n,\t", ",,", "", " ", ";", "]", ",]"}

func randF32Data(r *rand.Rand) (string, int) {
	var sb strings.Builder
	sb.WriteString([]string{"[", "[ ", "[\n", "["}[r.IntN(4)])
	k := r.IntN(8)
	for i := range k {
		if i > 0 {
			if r.IntN(8) == 0 {
				sb.WriteString(f32Seps[r.IntN(len(f32Seps))])
			} else {
				sb.WriteString(",")
			}
		}
		switch r.IntN(3) {
		case 0:
			sb.WriteString(f32Atoms[r.IntN(len(f32Atoms))])
		case 1:
			sb.Write(appendFloat32(nil, float32(r.NormFloat64()*pow10f64[r.IntN(8)])))
		default:
			f := float64(r.Float32()) * pow10f64[r.IntN(20)]
			if r.IntN(2) == 0 {
				f = 1 / f
			}
			sb.WriteString(strconv.FormatFloat(f, "eEfg"[r.IntN(4)], r.IntN(22)-1, 64))
		}
	}
	sb.WriteString([]string{"]", " ]", "", "]]", ",]"}[r.IntN(5)])
	n := k
	if r.IntN(4) == 0 {
		n = r.IntN(9)
	}
	return sb.String(), n
}

func TestFlatF32SameAsGeneral(t *testing.T) {
	for _, a := range f32Atoms {
		for _, s := range f32Seps {
			for n := 0; n <= 3; n++ {
				decodeBoth(t, f32Body(n, "["+a+s+a+"]"))
				decodeBoth(t, f32Body(n, "[1"+s+a+"]"))
				decodeBoth(t, f32Body(n, "["+a+s+"2]"))
				decodeBoth(t, f32Body(n, "["+a+s))
				decodeBoth(t, f32Body(n, "["+a))
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		data, n := randF32Data(r)
		decodeBoth(t, f32Body(n, data))
		if r.IntN(4) == 0 {
			decodeBoth(t, f32Body(n, data[:r.IntN(len(data)+1)]))
		}
	}
	for _, body := range [][]byte{shortJSONRequest(1024), pythonJSONRequest(1024), pythonJSONRequest(64)} {
		decodeBoth(t, body)
	}
}

func FuzzFlatF32(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 64 {
		data, n := randF32Data(r)
		f.Add(data, n)
	}
	f.Fuzz(func(t *testing.T, data string, n int) {
		if n < 0 || n > 64 {
			return
		}
		decodeBoth(t, f32Body(n, data))
	})
}
