package pb

import (
	"errors"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b Buffer
	b.Int(1, 150)
	b.Int(2, -1)
	b.String(3, "héllo")
	b.Float(4, 1.5)
	b.Message(5, func(m *Buffer) { m.Int(1, math.MaxInt64) })
	b.Bytes(6, []byte{1, 2, 3, 0x96, 0x01}) // also readable as a packed varint run

	var got []Field
	if err := Walk(b, func(f Field) error { got = append(got, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("got %d fields, want 6", len(got))
	}
	if got[0].Num != 1 || got[0].Type != Varint || got[0].U != 150 {
		t.Errorf("field 1: %+v", got[0])
	}
	if int64(got[1].U) != -1 {
		t.Errorf("field 2: %d, want -1", int64(got[1].U))
	}
	if string(got[2].B) != "héllo" {
		t.Errorf("field 3: %q", got[2].B)
	}
	if got[3].Type != Fixed32 || math.Float32frombits(uint32(got[3].U)) != 1.5 {
		t.Errorf("field 4: %+v", got[3])
	}
	var inner uint64
	if err := Walk(got[4].B, func(f Field) error { inner = f.U; return nil }); err != nil || inner != math.MaxInt64 {
		t.Errorf("field 5: %d, %v", inner, err)
	}
	vs, err := got[5].Varints()
	if err != nil || len(vs) != 4 || vs[3] != 150 {
		t.Errorf("packed varints: %v, %v", vs, err)
	}
	if _, err := got[5].Fixed(4); err == nil {
		t.Error("5 bytes read as packed fixed32: want an error")
	}
	if fs, err := (Field{Type: Bytes, B: []byte{1, 0, 0, 0, 2, 0, 0, 0}}).Fixed(4); err != nil || len(fs) != 2 || fs[1] != 2 {
		t.Errorf("packed fixed32: %v, %v", fs, err)
	}
}

func TestMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated key":       {0x80},
		"field zero":          {0x00, 0x01},
		"truncated varint":    {0x08, 0xff},
		"overlong varint":     {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"length past end":     {0x0a, 0x05, 0x01},
		"huge length":         {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"truncated fixed32":   {0x0d, 0x01, 0x02},
		"truncated fixed64":   {0x09, 0x01},
		"group (wire type 3)": {0x0b},
	} {
		err := Walk(b, func(Field) error { return nil })
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestWalkStopsOnCallbackError(t *testing.T) {
	var b Buffer
	b.Int(1, 1)
	b.Int(2, 2)
	stop := errors.New("stop")
	n := 0
	err := Walk(b, func(Field) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("err = %v after %d fields, want stop after 1", err, n)
	}
}
