package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestTransform(t *testing.T) {
	order := parseOrder("a, b")
	tests := []struct {
		name, ct, body string
		rows           int64
		client         bool
	}{
		{"features", "application/json", `{"features":{"b":2,"a":1}}`, 1, false},
		{"instances", "application/vnd.x+json", ` {"instances":[[1,2],{"a":3,"b":-4e2}]} `, 2, false},
		{"escaped key", "", `{"features":{"\u0061":1,"b":2}}`, 1, false},
		{"leading zero", "", `{"instances":[[01,2]]}`, 0, true},
		{"trailing", "", `{"instances":[[1,2]]} x`, 0, true},
		{"missing", "", `{"features":{"a":1}}`, 0, true},
		{"unknown field", "", `{"feature":{}}`, 0, true},
		{"both", "", `{"features":{"a":1,"b":2},"instances":[[1,2]]}`, 0, true},
		{"not json", "text/csv", `1,2`, 0, true},
		{"unterminated", "", `{"features":{"a`, 0, true},
		{"nan word", "", `{"instances":[[NaN,1]]}`, 0, true},
		{"empty instances", "", `{"instances":[]}`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := transform(order, tc.ct, []byte(tc.body))
			if tc.client {
				if !errors.Is(err, errClient) {
					t.Fatalf("err = %v, want a client error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Shape[0] != tc.rows || got.Shape[1] != 2 || len(got.Data) != int(8*tc.rows) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// TestDefaultOrder: the link-time default is the Iris feature order.
func TestDefaultOrder(t *testing.T) {
	if got := parseOrder(featureOrder); len(got) != 4 || got[0] != "sepal_length" || got[3] != "petal_width" {
		t.Fatalf("default order %v", got)
	}
}

// FuzzNum: the number reader accepts exactly JSON's number grammar and
// yields strconv's float32 for it, fast path or not.
func FuzzNum(f *testing.F) {
	for _, s := range []string{"5.1", "-0", "0.001", "1e10", "3.4028235e38", "3.5e38", "16777217", "1.00000005",
		"123456789012345678901234", "0.1e-45", "01", "1.", "-", "1e", ".5", "+1", "1e+2", "9999999.5", "7e-10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		s := &scanner{b: []byte(lit)}
		got, err := s.num()
		lit = strings.TrimLeft(lit, " \t\r\n") // num skips white space first
		var n json.Number
		jsonOK := json.Unmarshal([]byte(lit), &n) == nil && lit != "" && (lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9'))
		want, werr := strconv.ParseFloat(lit, 32)
		switch {
		case err == nil && s.i == len(s.b):
			if !jsonOK || werr != nil {
				t.Fatalf("num(%q) = %v, but JSON ok %v, strconv %v", lit, got, jsonOK, werr)
			}
			if math.Float32bits(got) != math.Float32bits(float32(want)) {
				t.Fatalf("num(%q) = %v (%#x), strconv %v (%#x)", lit, got, math.Float32bits(got), float32(want), math.Float32bits(float32(want)))
			}
		case jsonOK && werr == nil:
			t.Fatalf("num(%q) read %d bytes, err %v; JSON and strconv accept it", lit, s.i, err)
		}
	})
}

// FuzzTransform: whatever the reader accepts is valid JSON whose features
// encoding/json decodes to the same values.
func FuzzTransform(f *testing.F) {
	f.Add(`{"features":{"b":2,"a":1}}`)
	f.Add(` {"instances":[[1,2],{"a":3,"b":-4e2}]} `)
	f.Add(`{"features":{"\u0061":1.5,"b":2e-3}}`)
	f.Add(`{"instances":[[1,2]]} x`)
	order := parseOrder("a,b")
	f.Fuzz(func(t *testing.T, body string) {
		got, err := transform(order, "", []byte(body))
		if err != nil {
			return
		}
		var v struct {
			Features  map[string]float64
			Instances []json.RawMessage
		}
		if !json.Valid([]byte(body)) || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("accepted %q, which encoding/json rejects", body)
		}
		var rows [][]float64
		if v.Features != nil {
			rows = append(rows, []float64{v.Features["a"], v.Features["b"]})
		}
		for _, raw := range v.Instances {
			var named map[string]float64
			var row []float64
			if json.Unmarshal(raw, &row) != nil {
				if err := json.Unmarshal(raw, &named); err != nil {
					t.Fatalf("accepted instance %s: %v", raw, err)
				}
				row = []float64{named["a"], named["b"]}
			}
			rows = append(rows, row)
		}
		if int64(len(rows)) != got.Shape[0] || len(got.Data) != 8*len(rows) {
			t.Fatalf("%q: shape %v, encoding/json sees %d rows", body, got.Shape, len(rows))
		}
		for r, row := range rows {
			for c, want := range row {
				g := math.Float32frombits(binary.LittleEndian.Uint32(got.Data[4*(2*r+c):]))
				if g != float32(want) {
					t.Fatalf("%q: row %d col %d = %v, encoding/json %v", body, r, c, g, float32(want))
				}
			}
		}
	})
}

func TestEq(t *testing.T) {
	words := []string{"", "a", "ab", "abc", "abcd", "abcde", "sepal_width", "sepal_length", "petal_length", "0123456789abcdefX"}
	for _, a := range words {
		for _, b := range words {
			if got := eq([]byte(a), b); got != (a == b) {
				t.Errorf("eq(%q, %q) = %v", a, b, got)
			}
		}
		for i := range len(a) { // one byte differs at every position
			c := []byte(a)
			c[i] ^= 1
			if eq(c, a) {
				t.Errorf("eq(%q, %q) = true", c, a)
			}
		}
	}
}
