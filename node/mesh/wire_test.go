package mesh

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/routing"
)

func TestCatalogValidate(t *testing.T) {
	if err := smallCatalog(3, 10).Validate(); err != nil {
		t.Fatalf("valid catalog rejected: %v", err)
	}
	if err := (Catalog{}).Validate(); err != nil {
		t.Fatalf("empty catalog rejected: %v", err)
	}
	entry := CatalogEntry{Name: "resnet", Version: "1", Digest: sha(1), Bytes: 1}
	cases := map[string]struct {
		mod  func(*CatalogEntry)
		want string
	}{
		"empty name":         {func(e *CatalogEntry) { e.Name = "" }, "name: is required"},
		"long name":          {func(e *CatalogEntry) { e.Name = strings.Repeat("n", MaxModelNameLen+1) }, "name"},
		"name with space":    {func(e *CatalogEntry) { e.Name = "res net" }, "name"},
		"empty version":      {func(e *CatalogEntry) { e.Version = "" }, "version"},
		"long version":       {func(e *CatalogEntry) { e.Version = strings.Repeat("v", MaxModelVersionLen+1) }, "version"},
		"version bad utf-8":  {func(e *CatalogEntry) { e.Version = "\xc3" }, "version"},
		"digest wrong algo":  {func(e *CatalogEntry) { e.Digest = "sha512:" + strings.Repeat("a", 64) }, "digest"},
		"digest upper case":  {func(e *CatalogEntry) { e.Digest = "sha256:" + strings.Repeat("A", 64) }, "lower-case"},
		"digest short":       {func(e *CatalogEntry) { e.Digest = "sha256:" + strings.Repeat("a", 63) }, "digest"},
		"digest not hex":     {func(e *CatalogEntry) { e.Digest = "sha256:" + strings.Repeat("g", 64) }, "digest"},
		"negative bytes":     {func(e *CatalogEntry) { e.Bytes = -1 }, "negative"},
		"digest with prefix": {func(e *CatalogEntry) { e.Digest = " " + sha(1) }, "digest"},
	}
	for name, tc := range cases {
		e := entry
		tc.mod(&e)
		err := Catalog{Models: []CatalogEntry{e}}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error about %q", name, err, tc.want)
		}
	}
	dup := Catalog{Models: []CatalogEntry{entry, {Name: "a", Version: "1", Digest: sha(2)}, entry}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate: Validate = %v", err)
	}
	big := Catalog{Models: make([]CatalogEntry, MaxCatalogEntries+1)}
	if err := big.Validate(); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Errorf("too many entries: Validate = %v", err)
	}
}

func TestCatalogClone(t *testing.T) {
	c := smallCatalog(1, 3)
	d := c.Clone()
	d.Models[0].Name = "changed"
	if c.Models[0].Name == "changed" {
		t.Error("Clone shares Models")
	}
}

func TestDigest(t *testing.T) {
	base := smallCatalog(5, 4)
	d := Digest(base)
	reversed := base.Clone()
	slices.Reverse(reversed.Models)
	if Digest(reversed) != d {
		t.Error("Digest depends on entry order")
	}
	otherGen := base.Clone()
	otherGen.Generation = 99
	if Digest(otherGen) != d {
		t.Error("Digest depends on Generation")
	}
	changes := map[string]func(*CatalogEntry){
		"name":    func(e *CatalogEntry) { e.Name += "x" },
		"version": func(e *CatalogEntry) { e.Version += "x" },
		"digest":  func(e *CatalogEntry) { e.Digest = sha(777) },
		"ready":   func(e *CatalogEntry) { e.Ready = !e.Ready },
		"bytes":   func(e *CatalogEntry) { e.Bytes++ },
	}
	for name, mod := range changes {
		c := base.Clone()
		mod(&c.Models[2])
		if Digest(c) == d {
			t.Errorf("changing %s keeps the digest", name)
		}
	}
	// Length prefixes keep field boundaries apart.
	a := Catalog{Models: []CatalogEntry{{Name: "ab", Version: "c", Digest: sha(1)}}}
	b := Catalog{Models: []CatalogEntry{{Name: "a", Version: "bc", Digest: sha(1)}}}
	if Digest(a) == Digest(b) {
		t.Error("digest ignores field boundaries")
	}
	if Digest(Catalog{}) == Digest(smallCatalog(1, 1)) {
		t.Error("empty and non-empty catalogs share a digest")
	}
}

// maxCatalog is the largest valid catalog: every entry at every limit.
func maxCatalog() Catalog {
	c := Catalog{Generation: math.MaxUint64}
	for i := range MaxCatalogEntries {
		name := fmt.Sprintf("%06d", i) + strings.Repeat("ñ", (MaxModelNameLen-6)/2) // 6 + 61*2 = 128 bytes
		c.Models = append(c.Models, CatalogEntry{
			Name: name, Version: strings.Repeat("v", MaxModelVersionLen),
			Digest: sha(i), Ready: true, Bytes: math.MaxInt64,
		})
	}
	return c
}

func TestLargestCatalogFitsState(t *testing.T) {
	c := maxCatalog()
	if len(c.Models[0].Name) != MaxModelNameLen {
		t.Fatalf("name is %d bytes", len(c.Models[0].Name))
	}
	r, err := newCatalogRecord(strings.Repeat("i", MaxNodeIDLen), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.body) != catalogBodyMaxLen {
		t.Errorf("body is %d bytes, catalogBodyMaxLen says %d", len(r.body), catalogBodyMaxLen)
	}
	b, n := encodeState([]*catalogRecord{r}, MaxStateBytes)
	if n != 1 {
		t.Fatalf("the largest catalog does not fit in the state (%d bytes for the record)", r.encodedLen())
	}
	if len(b) > MaxStateBytes || stateHeaderLen+recordMaxLen > MaxStateBytes {
		t.Fatalf("state is %d bytes, bound %d, cap %d", len(b), stateHeaderLen+recordMaxLen, MaxStateBytes)
	}
	recs, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].digest != Digest(c) || !slices.Equal(recs[0].catalog.Models, c.Models) {
		t.Fatal("largest catalog does not round-trip")
	}
	if encodeCatalogMsg(r) != nil {
		t.Error("a 1 MB catalog was made into a gossip message")
	}
}

func TestStateRoundTrip(t *testing.T) {
	var recs []*catalogRecord
	for i := range 5 {
		recs = append(recs, mustRecord(t, fmt.Sprintf("node-%d", i), smallCatalog(uint64(i), i)))
	}
	b, n := encodeState(recs, MaxStateBytes)
	if n != len(recs) {
		t.Fatalf("encoded %d of %d records", n, len(recs))
	}
	out, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		in := recs[i]
		if r.id != in.id || r.digest != in.digest || r.catalog.Generation != in.catalog.Generation ||
			!slices.Equal(r.catalog.Models, in.catalog.Models) || !bytes.Equal(r.body, in.body) {
			t.Errorf("record %d differs", i)
		}
	}

	// The limit cuts at a record boundary.
	limit := stateHeaderLen + recs[0].encodedLen() + recs[1].encodedLen() + recs[2].encodedLen() - 1
	b, n = encodeState(recs, limit)
	if n != 2 || len(b) > limit {
		t.Fatalf("limit %d: %d records in %d bytes", limit, n, len(b))
	}
	if out, err := decodeState(b); err != nil || len(out) != 2 {
		t.Fatalf("cut state: %d records, %v", len(out), err)
	}
}

func TestDecodeStateRejects(t *testing.T) {
	r1 := mustRecord(t, "a", smallCatalog(1, 3))
	r2 := mustRecord(t, "b", smallCatalog(2, 1))
	good, _ := encodeState([]*catalogRecord{r1, r2}, MaxStateBytes)
	// The first entry of r1 starts after: version, count, id, gen, count.
	entry := 3 + 2 + 8 + 2
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	dupNode, _ := encodeState([]*catalogRecord{r1, r1}, MaxStateBytes)
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"empty":          {nil, "truncated"},
		"version 2":      {with(func(b []byte) []byte { b[0] = 2; return b }), "unsupported version"},
		"trailing":       {append(bytes.Clone(good), 1), "trailing"},
		"extra count":    {with(func(b []byte) []byte { b[2]++; return b }), "truncated"},
		"duplicate node": {dupNode, "duplicate node"},
		"bad node id":    {with(func(b []byte) []byte { b[4] = 0xff; return b }), "node id"},
		"unknown entry flag": {with(func(b []byte) []byte {
			b[entry+1+len("model-0")+1+len("v1")+32] |= 0x40
			return b
		}), "unknown flags"},
		"size overflows int64": {with(func(b []byte) []byte {
			b[entry+1+len("model-0")+1+len("v1")+32+1] = 0x80
			return b
		}), "overflows"},
		"unsorted entries": {with(func(b []byte) []byte {
			b[entry+len("model-")] = '9' // model-9 before model-1
			return b
		}), "not sorted"},
		"entry count beyond data": {with(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[3+2+8:], MaxCatalogEntries)
			return b
		}), "truncated"},
		"entry count over the cap": {with(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[3+2+8:], MaxCatalogEntries+1)
			return b
		}), "at most"},
		"too large": {append([]byte{stateVersion, 0, 0}, make([]byte, MaxStateBytes)...), "at most"},
	}
	for name, tc := range cases {
		out, err := decodeState(tc.b)
		if err == nil {
			t.Errorf("%s: decoded %d records", name, len(out))
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
		}
	}
	for n := range len(good) {
		if _, err := decodeState(good[:n]); err == nil {
			t.Errorf("truncated to %d bytes: decoded", n)
		}
	}
	// Duplicate entries inside a catalog are "not sorted".
	c := smallCatalog(1, 2)
	body, _ := appendCatalogBody(nil, c)
	one := body[2 : 2+(len(body)-2)/2]
	dup := append(binary.BigEndian.AppendUint16(nil, 2), append(bytes.Clone(one), one...)...)
	if _, err := readCatalogBody(&reader{b: dup}); err == nil || !strings.Contains(err.Error(), "not sorted") {
		t.Errorf("duplicate entries: %v", err)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	r := mustRecord(t, "node-1", smallCatalog(4, 3))
	msg := encodeCatalogMsg(r)
	if msg == nil || len(msg) > MaxBroadcastBytes {
		t.Fatalf("message is %d bytes", len(msg))
	}
	dec, err := decodeMsg(msg)
	if err != nil {
		t.Fatal(err)
	}
	out := dec.record
	if out == nil || dec.leaving != "" || out.id != r.id || out.digest != r.digest || !slices.Equal(out.catalog.Models, r.catalog.Models) {
		t.Fatal("message does not round-trip")
	}
	leave := encodeLeaveMsg("node-€")
	if dec, err := decodeMsg(leave); err != nil || dec.leaving != "node-€" || dec.record != nil {
		t.Fatalf("leave message: %+v, %v", dec, err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":                  {nil, "truncated"},
		"version":                {append([]byte{9}, msg[1:]...), "unsupported version"},
		"type":                   {append([]byte{msgVersion, 7}, msg[2:]...), "unknown type"},
		"trailing":               {append(bytes.Clone(msg), 0), "trailing"},
		"truncated":              {msg[:len(msg)-1], "truncated"},
		"too large":              {make([]byte, MaxBroadcastBytes+1), "at most"},
		"leave without id":       {[]byte{msgVersion, msgTypeLeave, 0}, "required"},
		"leave id truncated":     {leave[:len(leave)-1], "truncated"},
		"leave trailing":         {append(bytes.Clone(leave), 'x'), "trailing"},
		"leave id invalid utf-8": {[]byte{msgVersion, msgTypeLeave, 1, 0xff}, "UTF-8"},
	} {
		if _, err := decodeMsg(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, tc.want)
		}
	}
}

func TestAckRoundTrip(t *testing.T) {
	c := routing.NewCoordinate(routing.DefaultCoordinateConfig())
	c.Vec[0], c.Error, c.Height = 0.001, 0.4, 0.0002
	b, err := encodeAck(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeAck(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Vec, c.Vec) || out.Error != c.Error || out.Height != c.Height || out.Adjustment != c.Adjustment {
		t.Fatalf("ack round trip: %+v vs %+v", out, c)
	}
	if _, err := encodeAck(nil); err == nil {
		t.Error("encodeAck(nil) succeeded")
	}
	nan := c.Clone()
	nan.Error = math.NaN()
	if _, err := encodeAck(nan); err == nil {
		t.Error("encodeAck(NaN) succeeded")
	}
	bad := bytes.Clone(b)
	binary.LittleEndian.PutUint64(bad[len(bad)-8:], math.Float64bits(math.Inf(1)))
	for name, p := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{2}, b[1:]...),
		"no coordinate": {ackVersion},
		"truncated":     b[:len(b)-1],
		"infinite":      bad,
		"too large":     make([]byte, maxAckPayloadLen+1),
	} {
		if _, err := decodeAck(p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
