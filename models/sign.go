package models

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/petrel-mesh/petrel/internal/atomicfile"
)

// Manifest signing: the coordinator signs the exact JSON bytes of every
// manifest it registers with an ed25519 key, and nodes verify those bytes
// with the coordinator's public key before they decode them. The bytes are
// stored and sent as they were signed (bus.SignedManifest), never
// re-encoded, so no canonical JSON form is needed.

// PEM block types of the key files.
const (
	pemPrivateKey = "PRIVATE KEY" // PKCS#8
	pemPublicKey  = "PUBLIC KEY"  // PKIX
)

// maxKeyFile bounds the key files read; an ed25519 PEM file is ~120 bytes.
const maxKeyFile = 64 << 10

var (
	// ErrBadSignature is returned by VerifyManifest when the signature does
	// not verify (or the key or signature is malformed).
	ErrBadSignature = errors.New("bad manifest signature")
	// ErrDigestMismatch is returned by VerifyArtifact when the artifact's
	// sha256 is not the manifest's digest.
	ErrDigestMismatch = errors.New("artifact digest mismatch")
)

// Signer signs manifests with an ed25519 private key. It is safe for
// concurrent use.
type Signer struct {
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
}

// GenerateSigner returns a signer with a new random key.
func GenerateSigner() (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return newSigner(priv), nil
}

// NewSigner returns a signer for an existing private key (for tests and
// for keys kept elsewhere than in a file).
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return newSigner(append(ed25519.PrivateKey{}, priv...)), nil
}

func newSigner(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, keyID: PublicKeyID(pub)}
}

// LoadOrCreateSigner reads the PEM (PKCS#8) ed25519 private key at path,
// or, when no file is there, generates one and writes it with mode 0600
// (creating the directory with mode 0700 if needed). The file appears
// whole or not at all; when two processes race to create it, both end up
// with the key that was written first.
//
// It refuses a key file that group or others can access, naming the chmod
// that fixes it, and any file that is not exactly one PEM "PRIVATE KEY"
// block holding an ed25519 key.
func LoadOrCreateSigner(path string) (*Signer, error) {
	if path == "" {
		return nil, errors.New("signing key path is empty")
	}
	s, err := loadSigner(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	s, err = GenerateSigner()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create signing key directory: %w", err)
	}
	created, err := createExclusive(path, data, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write signing key %s: %w", path, err)
	}
	if !created {
		// Another process wrote it first: use theirs.
		return loadSigner(path)
	}
	return s, nil
}

// loadSigner reads an existing key file; a missing file gives an error
// wrapping fs.ErrNotExist.
func loadSigner(path string) (*Signer, error) {
	// Stat first so that a FIFO or device at path is refused, not opened.
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o: a private key must not be accessible by group or others; run `chmod 600 %s`", path, perm, path)
	}
	b, err := readLimited(f, path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, err := parsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return newSigner(priv), nil
}

// readLimited reads a key file of at most maxKeyFile bytes.
func readLimited(r io.Reader, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes, not an ed25519 PEM key", path, maxKeyFile)
	}
	return b, nil
}

func parsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, err := onePEM(b, pemPrivateKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8 private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ed25519", k)
	}
	return priv, nil
}

// onePEM decodes exactly one PEM block of the given type.
func onePEM(b []byte, typ string) (*pem.Block, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM %q block found", typ)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, typ)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("PEM %q block has headers (encrypted keys are not supported)", typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the PEM %q block", typ)
	}
	return block, nil
}

// createExclusive writes data to path only if nothing is there, so that a
// reader never sees a partial file (internal/atomicfile.CreateNew).
// created is false, with no error, when path already existed.
func createExclusive(path string, data []byte, perm os.FileMode) (created bool, err error) {
	if err := atomicfile.CreateNew(path, data, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return append(ed25519.PublicKey{}, s.pub...) }

// KeyID identifies the signer's key: PublicKeyID of its public key.
func (s *Signer) KeyID() string { return s.keyID }

// PublicKeyID is the first 16 hex digits of the sha256 of an ed25519
// public key: the key_id of bus.SignedManifest.
func PublicKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign validates m, encodes it as JSON and signs those bytes. Store and
// send manifestJSON as returned: the signature covers exactly these bytes.
func (s *Signer) Sign(m *Manifest) (manifestJSON []byte, sig []byte, err error) {
	if m == nil {
		return nil, nil, fmt.Errorf("%w: nil manifest", ErrInvalidManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	manifestJSON, err = json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("encode manifest %s/%s: %w", m.Name, m.Version, err)
	}
	return manifestJSON, ed25519.Sign(s.priv, manifestJSON), nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" (PKIX) block, the
// format of WritePublicKey's file and ParsePublicKey's input.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ed25519 public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// WritePublicKey writes pub as a PEM "PUBLIC KEY" (PKIX) file with mode
// 0644, replacing any file at path.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	data, err := MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return nil
}

// ReadPublicKey reads a PEM "PUBLIC KEY" (PKIX) ed25519 public key file.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	defer f.Close()
	b, err := readLimited(f, path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}

// ParsePublicKey decodes a PEM "PUBLIC KEY" (PKIX) block holding an
// ed25519 public key.
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	block, err := onePEM(pemBytes, pemPublicKey)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKIX public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want ed25519", k)
	}
	return pub, nil
}

// VerifyManifest checks sig over the exact bytes manifestJSON with pub,
// then decodes and validates the manifest. A malformed key or signature,
// or one that does not verify, gives an error wrapping ErrBadSignature; a
// signed manifest that does not decode or validate, one wrapping
// ErrInvalidManifest. Unknown JSON fields are allowed, so that older nodes
// accept manifests from a newer coordinator.
func VerifyManifest(pub ed25519.PublicKey, manifestJSON, sig []byte) (*Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key has %d bytes, want %d", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature has %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, manifestJSON, sig) {
		return nil, fmt.Errorf("%w: does not verify with key %s", ErrBadSignature, PublicKeyID(pub))
	}
	var m Manifest
	if err := json.Unmarshal(manifestJSON, &m); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrInvalidManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// VerifyArtifact checks that the sha256 of artifact is m.Digest. The error
// wraps ErrDigestMismatch when it is not, and ErrInvalidManifest when the
// manifest has no digest to check against.
func VerifyArtifact(m *Manifest, artifact []byte) error {
	if m == nil {
		return fmt.Errorf("%w: nil manifest", ErrInvalidManifest)
	}
	if m.Digest == "" {
		return fmt.Errorf("%w: %s/%s has no digest to verify the artifact against", ErrInvalidManifest, m.Name, m.Version)
	}
	if got := DigestBytes(artifact); got != m.Digest {
		return fmt.Errorf("%w: %s/%s: artifact of %d bytes has %s, manifest says %s", ErrDigestMismatch, m.Name, m.Version, len(artifact), got, m.Digest)
	}
	return nil
}
