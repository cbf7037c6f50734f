package secagg

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var updateCorpora = flag.Bool("update-corpora", false, "rewrite the seed corpora under testdata/fuzz")

// sampleMessages runs a small aggregation (4 clients, client 4 dropping
// after round 1) and returns one encoded message of every type.
func sampleMessages(tb testing.TB) map[MessageType][]byte {
	tb.Helper()
	h := newHarness(tb, testConfig(4, 3, 3), 20, map[uint32]Round{4: RoundMaskedInputCollection})
	if _, err := h.run(); err != nil {
		tb.Fatal(err)
	}
	out := map[MessageType][]byte{}
	add := func(m Message) {
		b, err := m.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		out[m.Type()] = b
	}
	add(h.msgs[RoundAdvertiseKeys][2])
	add(h.keys[2])
	add(h.msgs[RoundShareKeys][2])
	add(h.cts[2])
	add(h.msgs[RoundMaskedInputCollection][2])
	add(h.reqs[2])
	add(h.msgs[RoundUnmasking][2])
	return out
}

func TestMessageRoundTrip(t *testing.T) {
	for typ, b := range sampleMessages(t) {
		t.Run(typ.String(), func(t *testing.T) {
			m, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Type() != typ {
				t.Fatalf("decoded a %v", m.Type())
			}
			again, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Fatal("re-encoding differs")
			}
			// Every proper prefix and every extension is refused.
			for n := range len(b) {
				if _, err := Decode(b[:n]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode of the first %d of %d bytes: %v", n, len(b), err)
				}
			}
			if _, err := Decode(append(slices.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode with a trailing byte: %v", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	samples := sampleMessages(t)
	edit := func(typ MessageType, f func(b []byte) []byte) []byte {
		return f(slices.Clone(samples[typ]))
	}
	put := func(b []byte, off int, v uint32) []byte { le.PutUint32(b[off:], v); return b }
	tests := []struct {
		name   string
		b      []byte
		errHas string
	}{
		{"empty", nil, "too short"},
		{"bad version", edit(TypeAdvertiseKeys, func(b []byte) []byte { b[0] = 2; return b }), "format version 2"},
		{"unknown type", []byte{1, 99}, "unknown message type 99"},
		{"sender 0", edit(TypeAdvertiseKeys, func(b []byte) []byte { return put(b, 2, 0) }), "sender id 0"},
		{"sender beyond MaxClients", edit(TypeMaskedInput, func(b []byte) []byte { return put(b, 2, MaxClients+1) }), "sender id"},
		{"key count too large for the buffer", edit(TypePublicKeys, func(b []byte) []byte { return put(b, 6, 1000) }), "do not fit"},
		{"key count beyond limit", edit(TypePublicKeys, func(b []byte) []byte { return put(b, 6, MaxClients+1) }), "at most"},
		{"vector count forged", edit(TypeMaskedInput, func(b []byte) []byte { return put(b, 6, 1<<30) }), "at most"},
		{"empty vector", []byte{1, byte(TypeMaskedInput), 1, 0, 0, 0, 0, 0, 0, 0}, "vector of 0 elements"},
		{"unsorted keys", edit(TypePublicKeys, func(b []byte) []byte {
			// swap the owner ids of the first two keys
			const item = 4 + 2*KeySize + CommitSize
			a, c := le.Uint32(b[10:]), le.Uint32(b[10+item:])
			put(b, 10, c)
			return put(b, 10+item, a)
		}), "not strictly increasing"},
		{"share to itself", edit(TypeShareKeys, func(b []byte) []byte { return put(b, 10, 2) }), "itself"},
		{"ciphertext from itself", edit(TypeCiphertexts, func(b []byte) []byte { return put(b, 10, 2) }), "itself"},
		{"duplicate survivor", edit(TypeUnmaskRequest, func(b []byte) []byte { return put(b, 14, le.Uint32(b[10:])) }), "not strictly increasing"},
		{"share value outside the field", edit(TypeUnmaskResponse, func(b []byte) []byte { b[14] = 0xff; return b }), "not a field element"},
		{"wrong type for the decoder", samples[TypeShareKeys], "holds a ShareKeys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.name == "wrong type for the decoder" {
				_, err = DecodeCiphertexts(tc.b)
			} else {
				var m Message
				m, err = Decode(tc.b)
				if m != nil {
					t.Fatalf("Decode returned a message with error %v", err)
				}
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, tc.errHas)
			}
		})
	}
}

func TestMarshalRejectsMalformed(t *testing.T) {
	for _, m := range []Message{
		&AdvertiseKeys{},
		&PublicKeys{To: 1, Keys: []AdvertiseKeys{{From: 2}, {From: 2}}},
		&ShareKeys{From: 1, Shares: []EncryptedShare{{Peer: 1}}},
		&Ciphertexts{To: 0},
		&MaskedInput{From: 1},
		&UnmaskRequest{To: 1, Survivors: []uint32{3, 2}},
		&UnmaskResponse{From: 1, SeedShares: []Share{{Owner: 2}}, KeyShares: []Share{{Owner: 2}}},
		&UnmaskResponse{From: 1, KeyShares: []Share{{Owner: 1}}},
	} {
		if _, err := m.MarshalBinary(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v %+v: MarshalBinary: %v, want ErrMalformed", m.Type(), m, err)
		}
	}
}

// fuzzDecode is the property every decoder fuzz target checks: decoding
// never panics, a failure is ErrMalformed with no message, and a success
// re-encodes to exactly the input and agrees with Decode.
func fuzzDecode[T Message](t *testing.T, b []byte, dec func([]byte) (T, error)) {
	m, err := dec(b)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	again, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("decoded message does not re-encode: %v", err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs from the input")
	}
	g, err := Decode(b)
	if err != nil || !reflect.DeepEqual(g, Message(m)) {
		t.Fatalf("Decode disagrees: %v", err)
	}
}

func FuzzDecodeAdvertiseKeys(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeAdvertiseKeys) })
}

func FuzzDecodePublicKeys(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodePublicKeys) })
}

func FuzzDecodeShareKeys(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeShareKeys) })
}

func FuzzDecodeCiphertexts(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeCiphertexts) })
}

func FuzzDecodeMaskedInput(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeMaskedInput) })
}

func FuzzDecodeUnmaskRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeUnmaskRequest) })
}

func FuzzDecodeUnmaskResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeUnmaskResponse) })
}

// FuzzDecode checks the type dispatcher on any bytes.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if m != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: %v, %v", m, err)
			}
			return
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

// TestSeedCorpora checks the committed seed corpora: each target has one,
// every file is in the go fuzz v1 format, and each target's corpus holds
// at least one input its decoder accepts (so the corpora follow the wire
// format when it changes). Run with -update-corpora to regenerate the
// valid seeds from a fresh aggregation.
func TestSeedCorpora(t *testing.T) {
	samples := sampleMessages(t)
	targets := map[string]MessageType{
		"FuzzDecodeAdvertiseKeys":  TypeAdvertiseKeys,
		"FuzzDecodePublicKeys":     TypePublicKeys,
		"FuzzDecodeShareKeys":      TypeShareKeys,
		"FuzzDecodeCiphertexts":    TypeCiphertexts,
		"FuzzDecodeMaskedInput":    TypeMaskedInput,
		"FuzzDecodeUnmaskRequest":  TypeUnmaskRequest,
		"FuzzDecodeUnmaskResponse": TypeUnmaskResponse,
		"FuzzDecode":               0,
	}
	for name, typ := range targets {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "fuzz", name)
			if *updateCorpora {
				writeCorpus(t, dir, typ, samples)
			}
			files, err := os.ReadDir(dir)
			if err != nil {
				t.Fatalf("seed corpus: %v", err)
			}
			valid := 0
			for _, fi := range files {
				raw, err := os.ReadFile(filepath.Join(dir, fi.Name()))
				if err != nil {
					t.Fatal(err)
				}
				b, err := parseCorpusFile(raw)
				if err != nil {
					t.Fatalf("%s: %v", fi.Name(), err)
				}
				if m, err := Decode(b); err == nil && (typ == 0 || m.Type() == typ) {
					valid++
				}
			}
			if valid == 0 {
				t.Fatalf("no valid message among %d seeds in %s", len(files), dir)
			}
		})
	}
}

// parseCorpusFile reads a go fuzz v1 file holding one []byte value.
func parseCorpusFile(raw []byte) ([]byte, error) {
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a go test fuzz v1 file with one value")
	}
	v, ok := strings.CutPrefix(lines[1], "[]byte(")
	if !ok || !strings.HasSuffix(v, ")") {
		return nil, errors.New("value is not a []byte")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func writeCorpus(t *testing.T, dir string, typ MessageType, samples map[MessageType][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for mt, b := range samples {
		if typ != 0 && mt != typ {
			continue
		}
		seeds["valid-"+strings.ToLower(mt.String())] = b
		seeds["truncated-"+strings.ToLower(mt.String())] = b[:len(b)/2]
	}
	seeds["empty"] = nil
	seeds["header-only"] = []byte{wireVersion, byte(typ)}
	for name, b := range seeds {
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
