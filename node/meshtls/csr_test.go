package meshtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSignNodeCSR(t *testing.T) {
	ca, err := NewDevCA(t.TempDir(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := NewNodeCSR("store-042")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(keyPEM, []byte("PRIVATE KEY")) || !bytes.Contains(csrPEM, []byte("CERTIFICATE REQUEST")) {
		t.Fatalf("NewNodeCSR PEM types: %q / %q", keyPEM[:30], csrPEM[:40])
	}
	certPEM, err := ca.SignNodeCSR(csrPEM, "store-042", []string{"store-042.example", "10.1.2.3", "10.1.2.3"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "store-042.example"}); err != nil {
			t.Fatalf("verify for %v: %v", usage, err)
		}
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "petrel://node/store-042" {
		t.Fatalf("URI SANs %v", cert.URIs)
	}
	if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "10.1.2.3" || !slices.Equal(cert.DNSNames, []string{"store-042.example"}) {
		t.Fatalf("SANs %v %v", cert.IPAddresses, cert.DNSNames)
	}
	if got := time.Until(cert.NotAfter); got > time.Hour+time.Minute || got < 50*time.Minute {
		t.Fatalf("lifetime %v, want about an hour", got)
	}
	signer, err := parsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		t.Fatal("the certificate does not carry the CSR's public key")
	}

	// The files load as a node's mesh TLS configuration.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	caFile := filepath.Join(dir, "ca.pem")
	for name, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: ca.CertificatePEM()} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ServerConfig(certFile, keyFile, caFile); err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	if _, err := ClientConfig(certFile, keyFile, caFile); err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	onDisk, err := os.ReadFile(ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, ca.CertificatePEM()) {
		t.Fatal("CertificatePEM differs from ca.pem")
	}
}

// The CSR's own subject and SANs are ignored: the issuer decides the
// identity.
func TestSignNodeCSRIgnoresRequestedNames(t *testing.T) {
	ca, err := NewDevCA(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "admin"},
		DNSNames: []string{"coordinator.example"},
		URIs:     []*url.URL{{Scheme: "petrel", Host: "node", Path: "/central-0"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignNodeCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), "edge-7", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "petrel://node/edge-7" || len(cert.DNSNames) != 0 || cert.Subject.CommonName != "edge-7" {
		t.Fatalf("certificate names: URIs %v DNS %v CN %q", cert.URIs, cert.DNSNames, cert.Subject.CommonName)
	}
}

func TestSignNodeCSRRejects(t *testing.T) {
	ca, err := NewDevCA(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, good, err := NewNodeCSR("edge-1")
	if err != nil {
		t.Fatal(err)
	}
	mkCSR := func(key any) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// A flipped byte in the signature (the end of the DER) breaks it.
	block, _ := pem.Decode(good)
	tampered := slices.Clone(block.Bytes)
	tampered[len(tampered)-3] ^= 0x55
	cases := []struct {
		name  string
		csr   []byte
		id    string
		hosts []string
		want  string
	}{
		{"garbage", []byte("hello"), "edge-1", nil, "no PEM certificate request"},
		{"wrong type", bytes.Replace(good, []byte("CERTIFICATE REQUEST"), []byte("CERTIFICATE"), 2), "edge-1", nil, "want CERTIFICATE REQUEST"},
		{"trailing", append(slices.Clone(good), "junk"...), "edge-1", nil, "trailing data"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}), "edge-1", nil, "parse certificate request"},
		{"tampered", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), "edge-1", nil, "signature does not verify"},
		{"P-224", mkCSR(p224), "edge-1", nil, "P-224"},
		{"small RSA", mkCSR(rsa1024), "edge-1", nil, "too small"},
		{"huge", bytes.Repeat([]byte("A"), maxCSRSize+1), "edge-1", nil, "at most"},
		{"bad id", good, "../etc", nil, "invalid character"},
		{"bad host", good, "edge-1", []string{"bad_host!"}, "host"},
	}
	for _, c := range cases {
		_, err := ca.SignNodeCSR(c.csr, c.id, c.hosts, time.Hour)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to mention %q", c.name, err, c.want)
			continue
		}
		if !IsCSRError(err) {
			t.Errorf("%s: %v is not a *CSRError", c.name, err)
		}
	}
}

func TestSignNodeCSRValidity(t *testing.T) {
	ca, err := NewDevCA(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csrPEM, err := NewNodeCSR("edge-1")
	if err != nil {
		t.Fatal(err)
	}
	// A lifetime beyond the CA's is cut at the CA's expiry.
	certPEM, err := ca.SignNodeCSR(csrPEM, "edge-1", nil, 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(block.Bytes)
	if !cert.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Fatalf("NotAfter %v, want the CA's %v", cert.NotAfter, ca.Certificate().NotAfter)
	}
	if _, err := ca.SignNodeCSR(csrPEM, "edge-1", nil, 0); err == nil || IsCSRError(err) {
		t.Fatalf("zero validity: %v", err)
	}
	// An expired CA is the issuer's problem, not the request's.
	ca.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := ca.SignNodeCSR(csrPEM, "edge-1", nil, time.Hour); err == nil || IsCSRError(err) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired CA: %v", err)
	}
}

func TestNewNodeCSRRejectsBadID(t *testing.T) {
	if _, _, err := NewNodeCSR("a/b"); err == nil {
		t.Fatal("NewNodeCSR accepted a bad node ID")
	}
}
