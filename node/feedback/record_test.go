package feedback

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func record(model string, i int, width int) Record {
	in := make([]float32, width)
	for j := range in {
		in[j] = float32(i) + float32(j)/float32(width)
	}
	return Record{
		Model: model, Version: "1", RequestID: "req-" + string(rune('a'+i%26)),
		Inputs: in, Label: int32(i % 3), Time: time.Unix(1_700_000_000+int64(i), int64(i)).UTC(),
	}
}

func TestFrameRoundTrip(t *testing.T) {
	long := make([]float32, 4096)
	for i := range long {
		long[i] = float32(math.Sin(float64(i)))
	}
	cases := []Record{
		record("m", 1, 1),
		{Model: "mlp-small", Version: "v2.1", Inputs: []float32{float32(math.Copysign(0, -1)), 1e-38, 3.4e38}, Label: math.MaxInt32, Time: time.Date(2261, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Model: "a", Version: "1", RequestID: "ünïcode-id/with spaces", Inputs: long, Label: 0, Time: time.Date(1678, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Model: "m", Version: "1", RequestID: strings.Repeat("x", MaxRequestIDBytes), Inputs: []float32{1}, Time: time.Unix(0, 0).UTC()},
	}
	for i, r := range cases {
		b := appendFrame(nil, &r)
		got, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, r)
		}
	}
}

func TestRecordValidate(t *testing.T) {
	ok := record("m", 1, 2)
	cases := []struct {
		name   string
		mutate func(*Record)
		want   string
	}{
		{"bad model", func(r *Record) { r.Model = "../x" }, "model name"},
		{"empty model", func(r *Record) { r.Model = "" }, "model name"},
		{"bad version", func(r *Record) { r.Version = "" }, "version"},
		{"long id", func(r *Record) { r.RequestID = strings.Repeat("x", MaxRequestIDBytes+1) }, "request id"},
		{"non-UTF-8 id", func(r *Record) { r.RequestID = "\xff" }, "request id"},
		{"negative label", func(r *Record) { r.Label = -1 }, "negative"},
		{"no inputs", func(r *Record) { r.Inputs = nil }, "0 inputs"},
		{"NaN", func(r *Record) { r.Inputs = []float32{1, float32(math.NaN())} }, "input 1 is NaN"},
		{"Inf", func(r *Record) { r.Inputs = []float32{float32(math.Inf(-1))} }, "-Inf"},
		{"old time", func(r *Record) { r.Time = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, "time"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for _, c := range cases {
		r := ok
		r.Inputs = append([]float32(nil), ok.Inputs...)
		c.mutate(&r)
		err := r.Validate()
		if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want ErrInvalidRecord mentioning %q", c.name, err, c.want)
		}
	}
}

// TestDecodeFrameDetectsDamage flips every bit of a frame and cuts it at
// every length: each is an error wrapping ErrCorrupt.
func TestDecodeFrameDetectsDamage(t *testing.T) {
	r := record("model-x", 7, 5)
	b := appendFrame(nil, &r)
	for i := range b {
		for bit := range 8 {
			d := append([]byte(nil), b...)
			d[i] ^= 1 << bit
			if got, err := decodeFrame(d); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: record %+v, error %v", bit, i, got, err)
			}
		}
	}
	for n := range len(b) {
		if _, err := decodeFrame(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: error %v", n, err)
		}
	}
}

// FuzzDecodeRecord: decoding never panics, and a frame that decodes
// re-encodes to one that decodes to the same record. The bytes are also
// decoded as a bare payload, so that the field checks behind the checksum
// get fuzzed too.
func FuzzDecodeRecord(f *testing.F) {
	for i, r := range []Record{record("m", 1, 1), record("mlp", 2, 8), {Model: "x", Version: "9", Inputs: []float32{0}, Time: time.Unix(0, 0).UTC()}} {
		b := appendFrame(nil, &r)
		f.Add(b)
		f.Add(b[:len(b)-i-1])
		f.Add(b[frameHeader:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(r Record, err error) {
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				return
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("decoded an invalid record: %v", err)
			}
			again, err := decodeFrame(appendFrame(nil, &r))
			if err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
			if !reflect.DeepEqual(again, r) {
				t.Fatalf("round trip changed the record: %+v, %+v", again, r)
			}
		}
		check(decodeFrame(b))
		check(decodePayload(b))
	})
}
