package meshtls

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/petrel-mesh/petrel/internal/atomicfile"
)

// maxPEMFileSize caps every certificate, key and CA bundle file read by
// this package. Real files are a few kilobytes; the cap turns a wrong path
// (a log file, a device) into a clear error instead of a large read.
const maxPEMFileSize = 1 << 20

// readPEMFile reads a PEM file of at most maxPEMFileSize bytes.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("meshtls: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("meshtls: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("meshtls: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("meshtls: read %s: %w", path, err)
	}
	if len(data) > maxPEMFileSize {
		return nil, fmt.Errorf("meshtls: %s is larger than %d bytes; not a PEM certificate or key file", path, maxPEMFileSize)
	}
	return data, nil
}

// checkPrivateFile refuses a key file that group or others may read or
// write, as ssh does for identity files.
func checkPrivateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("meshtls: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("meshtls: private key %s has mode %04o; it must not be accessible by group or others (chmod 600)", path, perm)
	}
	return nil
}

// parseCertificates decodes a PEM bundle holding one or more CERTIFICATE
// blocks and nothing else but whitespace.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		if len(certs) == 0 {
			return nil, errors.New("no PEM certificate found (is this a PEM file?)")
		}
		return nil, errors.New("trailing data after the last PEM certificate")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found (file is empty)")
	}
	return certs, nil
}

// parsePrivateKey decodes exactly one PEM private key: PKCS #8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE
// KEY").
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found (is this a PEM file?)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM private key")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return signer, nil
}

// writeFileAtomic replaces path with data (internal/atomicfile).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("meshtls: %w", err)
	}
	return nil
}

// writeFileNoClobber creates path with data, failing with an error that
// wraps fs.ErrExist when path already exists (internal/atomicfile).
func writeFileNoClobber(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.CreateNew(path, data, perm); err != nil {
		return fmt.Errorf("meshtls: %w", err)
	}
	return nil
}
