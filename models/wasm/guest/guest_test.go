package guest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestPackUnpack(t *testing.T) {
	tests := []struct{ ptr, n, status uint32 }{
		{0, 0, StatusOK}, {0x1000, 5, StatusClientError}, {0xffffffff, MaxLen, StatusFailure}, {7, 1 << 20, StatusOK},
	}
	for _, tc := range tests {
		p, n, s := Unpack(Pack(tc.ptr, tc.n, tc.status))
		if p != tc.ptr || n != tc.n || s != tc.status {
			t.Errorf("Unpack(Pack(%d, %d, %d)) = %d, %d, %d", tc.ptr, tc.n, tc.status, p, n, s)
		}
	}
}

func TestBodyRoundTrip(t *testing.T) {
	b := EncodeBody("application/json", []byte(`{"a":1}`))
	ct, body, err := DecodeBody(b)
	if err != nil || ct != "application/json" || string(body) != `{"a":1}` {
		t.Fatalf("DecodeBody = %q, %q, %v", ct, body, err)
	}
	if _, _, err := DecodeBody([]byte{9, 0, 0, 0, 'x'}); !errors.Is(err, ErrFrame) {
		t.Fatalf("truncated body: %v, want ErrFrame", err)
	}
}

func TestFrameLimits(t *testing.T) {
	ts := []Tensor{{Name: "x", DataType: "FP32", Shape: []int64{1}, Data: []byte{0, 0, 0, 0}}}
	b, err := EncodeFrame(ts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeFrame(b)
	if err != nil || len(got) != 1 || got[0].Name != "x" || !bytes.Equal(got[0].Data, ts[0].Data) {
		t.Fatalf("DecodeFrame = %+v, %v", got, err)
	}
	tests := map[string][]byte{
		"too many tensors": {0xff, 0xff, 0, 0},
		"rank too high":    {1, 0, 0, 0, 1, 0, 'x', 4, 'F', 'P', '3', '2', 17},
		"huge data length": {1, 0, 0, 0, 1, 0, 'x', 4, 'F', 'P', '3', '2', 0, 0xff, 0xff, 0xff, 0x7f},
		"empty":            {},
	}
	for name, b := range tests {
		if _, err := DecodeFrame(b); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: err = %v, want ErrFrame", name, err)
		}
	}
	if _, err := EncodeFrame([]Tensor{{Name: "x", Shape: make([]int64, MaxRank+1)}}); err == nil {
		t.Error("EncodeFrame accepted rank 17")
	}
}

func FuzzDecodeFrame(f *testing.F) {
	b, _ := EncodeFrame([]Tensor{{Name: "x", DataType: "FP32", Shape: []int64{1}, Data: []byte{0, 0, 0, 0}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := DecodeFrame(b)
		if err != nil {
			return
		}
		again, err := EncodeFrame(ts)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding a decoded frame: %v (equal %v)", err, bytes.Equal(again, b))
		}
	})
}

// FuzzFrameDecoder: the reusing decoder accepts exactly the frames
// DecodeFrame accepts and decodes them to the same tensors, also when it
// is reused across frames.
func FuzzFrameDecoder(f *testing.F) {
	b, _ := EncodeFrame([]Tensor{
		{Name: "x", DataType: "FP32", Shape: []int64{1, 2}, Data: make([]byte, 8)},
		{Name: "labels", DataType: "BYTES", Shape: []int64{1}, Data: []byte("abc")},
	})
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte{0, 0, 0, 0})
	var d FrameDecoder
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := DecodeFrame(b)
		got, gerr := d.Decode(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("DecodeFrame err %v, FrameDecoder err %v", werr, gerr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrFrame) {
				t.Fatalf("FrameDecoder err %v is not ErrFrame", gerr)
			}
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d tensors, want %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Name != w.Name || g.DataType != w.DataType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("tensor %d: %+v, want %+v", i, g, w)
			}
		}
	})
}
