package meshtls

import (
	"encoding/pem"
	"testing"
	"time"
)

// FuzzParseCA feeds arbitrary bytes to the decoder behind LoadCA,
// ServerConfig and ClientConfig. It must never panic, and whatever it
// accepts must be a consistent CA: a CA certificate whose public key
// matches the key.
func FuzzParseCA(f *testing.F) {
	_, certPEM, keyPEM, err := generateCA("", time.Now(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM, keyPEM)
	f.Add(certPEM, []byte{})
	f.Add(keyPEM, certPEM)
	f.Add(append(append([]byte{}, certPEM...), certPEM...), keyPEM)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}), keyPEM)
	now := time.Now()
	f.Fuzz(func(t *testing.T, certData, keyData []byte) {
		// The pieces must not panic on their own either.
		if certs, err := parseCertificates(certData); err == nil && len(certs) == 0 {
			t.Fatal("parseCertificates returned no certificates and no error")
		}
		if key, err := parsePrivateKey(keyData); err == nil && key == nil {
			t.Fatal("parsePrivateKey returned a nil key and no error")
		}
		cert, key, err := parseCA(certData, keyData, now)
		if err != nil {
			return
		}
		if !cert.IsCA {
			t.Fatal("parseCA accepted a non-CA certificate")
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			t.Fatal("parseCA accepted a key that does not match the certificate")
		}
	})
}
