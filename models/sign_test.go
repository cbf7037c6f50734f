package models_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// testKey is a fixed key, so that the fuzz corpus can carry signatures
// that verify.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testManifest() *models.Manifest {
	return &models.Manifest{
		Name:    "churn",
		Version: "v2",
		Digest:  models.DigestBytes([]byte("model bytes")),
		Format:  models.FormatONNX,
		Signature: models.Signature{
			Inputs:  []models.TensorSpec{{Name: "x", DataType: models.FP32, Shape: []int64{-1, 4}}},
			Outputs: []models.TensorSpec{{Name: "y", DataType: models.FP32, Shape: []int64{-1, 1}}},
		},
		Labels:    map[string]string{"team": "growth"},
		CreatedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Lineage: &models.Lineage{
			Parent:   "v1",
			Source:   models.SourceTraining,
			Round:    "r-17",
			PushedBy: "coordinator",
			PushedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
			Nodes:    []string{"edge-a", "edge-b"},
			Samples:  1234,
		},
	}
}

func mustSigner(t *testing.T) *models.Signer {
	t.Helper()
	s, err := models.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s, err := models.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	m := testManifest()
	js, sig, err := s.Sign(m)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if want, _ := json.Marshal(m); !bytes.Equal(js, want) {
		t.Errorf("Sign returned %s, want json.Marshal of the manifest %s", js, want)
	}
	got, err := models.VerifyManifest(s.PublicKey(), js, sig)
	if err != nil {
		t.Fatalf("VerifyManifest: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("VerifyManifest = %+v, want %+v", got, m)
	}
}

func TestKeyID(t *testing.T) {
	s := mustSigner(t)
	sum := sha256.Sum256(testKey.Public().(ed25519.PublicKey))
	want := hex.EncodeToString(sum[:])[:16]
	if s.KeyID() != want {
		t.Errorf("KeyID = %q, want %q", s.KeyID(), want)
	}
	if got := models.PublicKeyID(s.PublicKey()); got != want {
		t.Errorf("PublicKeyID = %q, want %q", got, want)
	}
	other, err := models.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	if other.KeyID() == s.KeyID() {
		t.Error("two keys have the same id")
	}
}

func TestNewSignerRejectsShortKey(t *testing.T) {
	if _, err := models.NewSigner(testKey[:10]); err == nil || !strings.Contains(err.Error(), "10 bytes") {
		t.Errorf("NewSigner(10 bytes) error = %v, want one naming the size", err)
	}
}

func TestSignRejectsInvalidManifest(t *testing.T) {
	s := mustSigner(t)
	bad := testManifest()
	bad.Format = "tflite"
	for name, m := range map[string]*models.Manifest{"nil": nil, "bad format": bad} {
		if _, _, err := s.Sign(m); !errors.Is(err, models.ErrInvalidManifest) {
			t.Errorf("%s: Sign error = %v, want ErrInvalidManifest", name, err)
		}
	}
}

func TestVerifyManifestRejects(t *testing.T) {
	s := mustSigner(t)
	js, sig, err := s.Sign(testManifest())
	if err != nil {
		t.Fatal(err)
	}
	pub := s.PublicKey()
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	tampered := bytes.Replace(js, []byte(`"v2"`), []byte(`"v3"`), 1)
	// Signed by the right key, but not a valid manifest.
	signed := func(b string) ([]byte, []byte) { return []byte(b), ed25519.Sign(testKey, []byte(b)) }
	notJSON, notJSONSig := signed(`{"name":`)
	invalid, invalidSig := signed(`{"name":"m","version":"v1","format":"onnx"}`)
	badLineage, badLineageSig := signed(strings.Replace(string(js), `"source":"training"`, `"source":"magic"`, 1))

	tests := []struct {
		name    string
		pub     ed25519.PublicKey
		js, sig []byte
		want    error
		msg     string
	}{
		{"tampered", pub, tampered, sig, models.ErrBadSignature, "does not verify"},
		{"other key", other, js, sig, models.ErrBadSignature, "does not verify"},
		{"short signature", pub, js, sig[:10], models.ErrBadSignature, "signature has 10 bytes"},
		{"no signature", pub, js, nil, models.ErrBadSignature, "signature has 0 bytes"},
		{"no key", nil, js, sig, models.ErrBadSignature, "public key has 0 bytes"},
		{"long key", append(append([]byte{}, pub...), 0), js, sig, models.ErrBadSignature, "public key has 33 bytes"},
		{"signed non-JSON", pub, notJSON, notJSONSig, models.ErrInvalidManifest, "decode"},
		{"signed invalid manifest", pub, invalid, invalidSig, models.ErrInvalidManifest, "signature has no inputs"},
		{"signed bad lineage", pub, badLineage, badLineageSig, models.ErrInvalidManifest, `lineage: source "magic"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := models.VerifyManifest(tc.pub, tc.js, tc.sig)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("VerifyManifest error = %v, want %v containing %q", err, tc.want, tc.msg)
			}
			if m != nil {
				t.Errorf("VerifyManifest returned a manifest with an error")
			}
		})
	}
}

func TestVerifyManifestAllowsUnknownFields(t *testing.T) {
	js, _, err := mustSigner(t).Sign(testManifest())
	if err != nil {
		t.Fatal(err)
	}
	newer := append(bytes.TrimSuffix(js, []byte("}")), `,"added_later":{"x":1}}`...)
	m, err := models.VerifyManifest(testKey.Public().(ed25519.PublicKey), newer, ed25519.Sign(testKey, newer))
	if err != nil {
		t.Fatalf("VerifyManifest with an unknown field: %v", err)
	}
	if m.Version != "v2" {
		t.Errorf("version %q, want v2", m.Version)
	}
}

func TestVerifyArtifact(t *testing.T) {
	m := testManifest()
	if err := models.VerifyArtifact(m, []byte("model bytes")); err != nil {
		t.Errorf("matching artifact: %v", err)
	}
	err := models.VerifyArtifact(m, []byte("model bytez"))
	if !errors.Is(err, models.ErrDigestMismatch) || !strings.Contains(err.Error(), m.Digest) {
		t.Errorf("other artifact: error %v, want ErrDigestMismatch naming %s", err, m.Digest)
	}
	noDigest := testManifest()
	noDigest.Digest = ""
	if err := models.VerifyArtifact(noDigest, []byte("model bytes")); !errors.Is(err, models.ErrInvalidManifest) {
		t.Errorf("no digest: error %v, want ErrInvalidManifest", err)
	}
	if err := models.VerifyArtifact(nil, nil); !errors.Is(err, models.ErrInvalidManifest) {
		t.Errorf("nil manifest: error %v, want ErrInvalidManifest", err)
	}
}

func TestLoadOrCreateSigner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "signing.pem")
	s1, err := models.LoadOrCreateSigner(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file does not start with a PKCS#8 PEM block:\n%s", b)
	}
	s2, err := models.LoadOrCreateSigner(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !s1.PublicKey().Equal(s2.PublicKey()) {
		t.Error("loading the key file gave another key than the one created")
	}
	// What one signs the other verifies.
	js, sig, err := s1.Sign(testManifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := models.VerifyManifest(s2.PublicKey(), js, sig); err != nil {
		t.Error(err)
	}
}

func TestLoadOrCreateSignerConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := models.LoadOrCreateSigner(path)
			errs[i] = err
			if err == nil {
				ids[i] = s.KeyID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("caller %d got key %s, caller 0 got %s", i, ids[i], ids[0])
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestLoadOrCreateSignerRejects(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	tests := []struct {
		name string
		data []byte
		mode os.FileMode
		dir  bool
		want string
	}{
		{name: "group readable", data: good, mode: 0o640, want: "chmod 600"},
		{name: "world readable", data: good, mode: 0o604, want: "must not be accessible by group or others"},
		{name: "group writable", data: good, mode: 0o620, want: "chmod 600"},
		{name: "not PEM", data: []byte("hello"), mode: 0o600, want: `no PEM "PRIVATE KEY" block`},
		{name: "wrong block", data: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), mode: 0o600, want: `PEM block is "EC PRIVATE KEY"`},
		{name: "ecdsa key", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), mode: 0o600, want: "want ed25519"},
		{name: "garbage DER", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), mode: 0o600, want: "PKCS#8"},
		{name: "two blocks", data: append(append([]byte{}, good...), good...), mode: 0o600, want: "unexpected data after"},
		{name: "directory", dir: true, want: "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if tc.dir {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, tc.data, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			s, err := models.LoadOrCreateSigner(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadOrCreateSigner error = %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if s != nil {
				t.Error("a signer came back with the error")
			}
			if !tc.dir {
				if b, _ := os.ReadFile(path); !bytes.Equal(b, tc.data) {
					t.Error("the refused key file was changed")
				}
			}
		})
	}
	if _, err := models.LoadOrCreateSigner(""); err == nil {
		t.Error("empty path accepted")
	}
}

func TestPublicKeyFiles(t *testing.T) {
	s := mustSigner(t)
	path := filepath.Join(t.TempDir(), "signing.pub")
	if err := models.WritePublicKey(path, s.PublicKey()); err != nil {
		t.Fatal(err)
	}
	// Writing again replaces the file.
	if err := models.WritePublicKey(path, s.PublicKey()); err != nil {
		t.Fatalf("second write: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("public key mode %04o, want 0644", fi.Mode().Perm())
	}
	pub, err := models.ReadPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.PublicKey()) {
		t.Error("read back another public key")
	}
	if err := models.WritePublicKey(path, pub[:5]); err == nil || !strings.Contains(err.Error(), "5 bytes") {
		t.Errorf("WritePublicKey(5-byte key) error = %v", err)
	}
	b, err := models.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if file, _ := os.ReadFile(path); !bytes.Equal(b, file) {
		t.Errorf("MarshalPublicKey = %q, file holds %q", b, file)
	}
	if _, err := models.MarshalPublicKey(nil); err == nil {
		t.Error("MarshalPublicKey(nil) succeeded")
	}
	if _, err := models.ReadPublicKey(filepath.Join(t.TempDir(), "missing.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error %v, want os.ErrNotExist", err)
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKIXPublicKey(testKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no PEM"},
		{"private key block", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), `PEM block is "PRIVATE KEY"`},
		{"ecdsa", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}), "want ed25519"},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0}}), "PKIX"},
		{"trailing data", append(append([]byte{}, good...), "junk"...), "unexpected data after"},
		{"headers", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: edDER}), "headers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := models.ParsePublicKey(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePublicKey error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if pub, err := models.ParsePublicKey(good); err != nil || !pub.Equal(testKey.Public()) {
		t.Errorf("ParsePublicKey(good) = %x, %v", pub, err)
	}
}

// TestLineageValidate lives here with signing: the lineage travels inside
// the signed manifest.
func TestLineageValidate(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		l    models.Lineage
		want string // "" for valid
	}{
		{"upload", models.Lineage{Source: models.SourceUpload, Parent: "v1", PushedBy: "alice", PushedAt: at}, ""},
		{"first upload", models.Lineage{Source: models.SourceUpload}, ""},
		{"training", models.Lineage{Source: models.SourceTraining, Round: "r1", Nodes: []string{"a", "b"}, Samples: 10}, ""},
		{"training without contributors", models.Lineage{Source: models.SourceTraining, Round: "r1"}, ""},
		{"no source", models.Lineage{}, "source is empty"},
		{"unknown source", models.Lineage{Source: "import"}, `source "import"`},
		{"training without round", models.Lineage{Source: models.SourceTraining}, "round is required"},
		{"upload with round", models.Lineage{Source: models.SourceUpload, Round: "r1"}, "only training versions have a round"},
		{"upload with nodes", models.Lineage{Source: models.SourceUpload, Nodes: []string{"a"}}, "nodes given"},
		{"upload with samples", models.Lineage{Source: models.SourceUpload, Samples: 3}, "samples given"},
		{"bad parent", models.Lineage{Source: models.SourceUpload, Parent: "../x"}, "parent"},
		{"negative samples", models.Lineage{Source: models.SourceTraining, Round: "r", Samples: -1}, "samples -1"},
		{"empty node", models.Lineage{Source: models.SourceTraining, Round: "r", Nodes: []string{""}}, "node 0 is empty"},
		{"duplicate node", models.Lineage{Source: models.SourceTraining, Round: "r", Nodes: []string{"a", "a"}}, `node "a" appears twice`},
		{"control character", models.Lineage{Source: models.SourceUpload, PushedBy: "al\nice"}, "pushed_by"},
		{"long round", models.Lineage{Source: models.SourceTraining, Round: strings.Repeat("r", 300)}, "round is 300 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testManifest()
			m.Lineage = &tc.l
			err := m.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, models.ErrInvalidManifest) || !strings.Contains(err.Error(), "lineage: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate error = %v, want ErrInvalidManifest with lineage: ...%q", err, tc.want)
			}
		})
	}
}

func TestLineageJSON(t *testing.T) {
	m := testManifest()
	m.Lineage = nil
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte("lineage")) {
		t.Errorf("a manifest without lineage encodes one: %s", js)
	}
	m = testManifest()
	js, err = json.Marshal(m.Lineage)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"parent":"v1","source":"training","round":"r-17","pushed_by":"coordinator","pushed_at":"2025-03-01T12:00:00Z","nodes":["edge-a","edge-b"],"samples":1234}`
	if string(js) != want {
		t.Errorf("lineage JSON\n got %s\nwant %s", js, want)
	}
}

// FuzzVerifyManifest feeds arbitrary bytes as manifest, signature and key.
// Nothing may panic; a manifest that verifies must be valid and
// re-encodable. Each input is also signed with testKey, so that arbitrary
// manifests reach the decoder and validation.
func FuzzVerifyManifest(f *testing.F) {
	js, sig, err := func() ([]byte, []byte, error) {
		s, err := models.NewSigner(testKey)
		if err != nil {
			return nil, nil, err
		}
		return s.Sign(testManifest())
	}()
	if err != nil {
		f.Fatal(err)
	}
	pub := []byte(testKey.Public().(ed25519.PublicKey))
	f.Add(js, sig, pub)
	f.Add([]byte(`{}`), make([]byte, 64), pub)
	f.Add([]byte(`null`), []byte{}, []byte{})
	f.Add([]byte(`{"name":"m","version":"v1","format":"onnx","signature":{"inputs":[{"name":"x","datatype":"FP32","shape":[-1]}],"outputs":[{"name":"y","datatype":"FP32","shape":null}]},"lineage":{"source":"training"}}`), sig, pub[:31])
	f.Fuzz(func(t *testing.T, manifestJSON, sig, pub []byte) {
		check := func(m *models.Manifest, err error) {
			if err != nil {
				if m != nil {
					t.Fatal("a manifest came back with an error")
				}
				if !errors.Is(err, models.ErrBadSignature) && !errors.Is(err, models.ErrInvalidManifest) {
					t.Fatalf("error %v wraps neither ErrBadSignature nor ErrInvalidManifest", err)
				}
				return
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("verified manifest does not validate: %v", err)
			}
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("verified manifest does not encode: %v", err)
			}
		}
		check(models.VerifyManifest(pub, manifestJSON, sig))
		check(models.VerifyManifest(testKey.Public().(ed25519.PublicKey), manifestJSON, ed25519.Sign(testKey, manifestJSON)))
	})
}
