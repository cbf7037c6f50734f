package mesh

import (
	"bytes"
	"testing"

	"github.com/hashicorp/memberlist"
)

// The fuzz targets check that the decoders never panic and that whatever
// they accept is canonical: re-encoding yields the input byte for byte.
// Seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzDecodeMeta(f *testing.F) {
	if b, err := encodeMeta(sampleMeta(), memberlist.MetaMaxSize); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		out, err := encodeMeta(m, memberlist.MetaMaxSize)
		if err != nil {
			t.Fatalf("accepted metadata does not re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted a non-canonical encoding:\n in %x\nout %x", b, out)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	r, err := newCatalogRecord("node-1", smallCatalog(3, 2))
	if err == nil {
		b, _ := encodeState([]*catalogRecord{r}, MaxStateBytes)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeState(b)
		if err != nil {
			return
		}
		for _, r := range recs {
			if err := r.catalog.Validate(); err != nil {
				t.Fatalf("accepted an invalid catalog: %v", err)
			}
			if r.digest != Digest(r.catalog) {
				t.Fatal("record digest differs from Digest(catalog)")
			}
		}
		out, n := encodeState(recs, MaxStateBytes)
		if n != len(recs) || !bytes.Equal(out, b) {
			t.Fatalf("accepted a non-canonical state:\n in %x\nout %x", b, out)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	if r, err := newCatalogRecord("node-1", smallCatalog(2, 1)); err == nil {
		f.Add(encodeCatalogMsg(r))
	}
	f.Add(encodeLeaveMsg("node-1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeMsg(b)
		if err != nil {
			return
		}
		if (msg.record == nil) == (msg.leaving == "") {
			t.Fatalf("decoded message has both or neither payload: %+v", msg)
		}
		if out := msg.encode(); !bytes.Equal(out, b) {
			t.Fatalf("accepted a non-canonical message:\n in %x\nout %x", b, out)
		}
	})
}

func FuzzDecodeAck(f *testing.F) {
	if b, err := encodeAck(newTestCoordinate()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeAck(b)
		if err != nil {
			return
		}
		if !c.IsValid() {
			t.Fatal("accepted an invalid coordinate")
		}
		out, err := encodeAck(c)
		if err != nil {
			t.Fatalf("accepted coordinate does not re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted a non-canonical payload:\n in %x\nout %x", b, out)
		}
	})
}
