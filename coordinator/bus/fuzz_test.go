package bus

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fuzzDecode checks a decoder's contract on arbitrary bytes: it never
// panics, fails only with ErrInvalid or ErrTooLarge, and what it accepts
// is valid and survives an encode/decode round trip.
func fuzzDecode[T any, P interface {
	*T
	validator
}](t *testing.T, b []byte, decode func([]byte) (*T, error)) {
	v, err := decode(b)
	if err != nil {
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error %v wraps neither ErrInvalid nor ErrTooLarge", err)
		}
		if v != nil {
			t.Fatalf("value %+v returned with error %v", v, err)
		}
		return
	}
	if err := P(v).Validate(); err != nil {
		t.Fatalf("decoded value does not validate: %v", err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		// Values JSON can carry but not write back (such as times with
		// odd offsets) are not the decoder's concern.
		return
	}
	if _, err := decode(out); err != nil && len(out) <= MaxMessageBytes {
		t.Fatalf("re-encoded value %s does not decode: %v", out, err)
	}
}

func FuzzDecodeDesired(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeDesired) })
}

func FuzzDecodeNodeStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeNodeStatus) })
}

func FuzzDecodeNodeStats(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, DecodeNodeStats) })
}

// TestFuzzSeeds checks that the committed seed corpus means what its file
// names say: seeds named "valid", "central", "empty_versions" or
// "no_versions" decode, the others do not.
func TestFuzzSeeds(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"FuzzDecodeDesired":    func(b []byte) error { _, err := DecodeDesired(b); return err },
		"FuzzDecodeNodeStatus": func(b []byte) error { _, err := DecodeNodeStatus(b); return err },
		"FuzzDecodeNodeStats":  func(b []byte) error { _, err := DecodeNodeStats(b); return err },
	}
	good := map[string]bool{"seed-valid": true, "seed-central": true, "seed-empty_versions": true, "seed-no_versions": true}
	for fuzzName, decode := range decoders {
		dir := filepath.Join("testdata", "fuzz", fuzzName)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) < 4 {
			t.Errorf("%s: %d seeds, want at least 4", dir, len(entries))
		}
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
				t.Fatalf("%s/%s: not a one-value corpus file", dir, e.Name())
			}
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil {
				t.Fatalf("%s/%s: %v", dir, e.Name(), err)
			}
			err = decode([]byte(s))
			if good[e.Name()] && err != nil {
				t.Errorf("%s/%s: %v", fuzzName, e.Name(), err)
			}
			if !good[e.Name()] && err == nil {
				t.Errorf("%s/%s: decoded, want an error", fuzzName, e.Name())
			}
		}
	}
}
