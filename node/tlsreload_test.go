package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// servedCerts returns the leaf certificate the node presents over TCP
// (TLS) and over QUIC (HTTP/3), with cfg as the client configuration.
func servedCerts(t *testing.T, addr string, cfg *tls.Config) (tcp, h3 *x509.Certificate) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS over TCP: %v", err)
	}
	tcp = c.ConnectionState().PeerCertificates[0]
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, http3.ConfigureTLSConfig(cfg.Clone()), nil)
	if err != nil {
		t.Fatalf("QUIC: %v", err)
	}
	h3 = qc.ConnectionState().TLS.PeerCertificates[0]
	qc.CloseWithError(0, "")
	return tcp, h3
}

func writeKeyPair(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte) {
	t.Helper()
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadTLSServingCertificate: after the certificate files change,
// ReloadTLS makes new TCP and QUIC connections get the new certificate;
// broken files are refused and the old certificate stays.
func TestReloadTLSServingCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_, certA, keyA, err := node.DevCertificate()
	if err != nil {
		t.Fatal(err)
	}
	_, certB, keyB, err := node.DevCertificate()
	if err != nil {
		t.Fatal(err)
	}
	writeKeyPair(t, certFile, keyFile, certA, keyA)
	cfg := testConfig(t, newRepo(t).dir)
	cfg.CertFile, cfg.KeyFile, cfg.DevCertDir = certFile, keyFile, ""
	n := startNode(t, cfg)
	client := &tls.Config{InsecureSkipVerify: true} // the test compares certificates itself
	leafA, leafB := parseLeaf(t, certA), parseLeaf(t, certB)

	tcp, h3 := servedCerts(t, n.Addr(), client)
	if !tcp.Equal(leafA) || !h3.Equal(leafA) {
		t.Fatal("before the reload the node does not present certificate A")
	}
	writeKeyPair(t, certFile, keyFile, certB, keyB)
	tcp, _ = servedCerts(t, n.Addr(), client)
	if !tcp.Equal(leafA) {
		t.Fatal("the node changed certificates before ReloadTLS")
	}
	if err := n.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	tcp, h3 = servedCerts(t, n.Addr(), client)
	if !tcp.Equal(leafB) || !h3.Equal(leafB) {
		t.Fatal("after the reload the node does not present certificate B")
	}
	// A key that does not match: refused, B stays.
	writeKeyPair(t, certFile, keyFile, certA, keyB)
	if err := n.ReloadTLS(); err == nil {
		t.Fatal("ReloadTLS accepted a certificate with the wrong key")
	}
	tcp, h3 = servedCerts(t, n.Addr(), client)
	if !tcp.Equal(leafB) || !h3.Equal(leafB) {
		t.Fatal("a failed reload changed the certificate")
	}
}

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadTLSMeshCA: a mesh node whose certificate, key and CA files
// are replaced by ones from a new CA serves the new certificate after
// ReloadTLS (over TCP and QUIC); a broken CA file is refused. (Dialing
// peers through the reloadable client configuration is covered by every
// mesh forwarding test.)
func TestReloadTLSMeshCA(t *testing.T) {
	caA, err := meshtls.NewDevCA(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caB, err := meshtls.NewDevCA(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	install := func(ca *meshtls.CA) {
		c, k, err := ca.IssueNode("edge-1", []string{"127.0.0.1"}, t.TempDir(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{c: certFile, k: keyFile, ca.CertFile(): caFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(caA)
	cfg := testConfig(t, newRepo(t).dir)
	cfg.ID = "edge-1"
	cfg.Mesh = node.MeshConfig{Enabled: true, GossipBind: "127.0.0.1:0", Profile: "local", DevMode: true,
		CertFile: certFile, KeyFile: keyFile, CAFile: caFile}
	n := startNode(t, cfg)

	trusting := func(ca *meshtls.CA) *tls.Config {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Certificate())
		return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	if _, _, err := dialCert(n.Addr(), trusting(caA)); err != nil {
		t.Fatalf("before the reload, a client trusting CA A: %v", err)
	}
	install(caB)
	if err := n.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if _, _, err := dialCert(n.Addr(), trusting(caA)); err == nil {
		t.Fatal("after the reload the node still presents a certificate of CA A")
	}
	tcp, h3, err := dialCert(n.Addr(), trusting(caB))
	if err != nil {
		t.Fatalf("after the reload, a client trusting CA B: %v", err)
	}
	if tcp.Issuer.String() != caB.Certificate().Subject.String() || h3.Issuer.String() != caB.Certificate().Subject.String() {
		t.Fatalf("served certificates issued by %s / %s, want CA B", tcp.Issuer, h3.Issuer)
	}
	// A broken CA file: refused, the node keeps CA B's material.
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadTLS(); err == nil {
		t.Fatal("ReloadTLS accepted a broken CA file")
	}
	if _, _, err := dialCert(n.Addr(), trusting(caB)); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
}

// dialCert is servedCerts with errors returned instead of failing.
func dialCert(addr string, cfg *tls.Config) (tcp, h3 *x509.Certificate, err error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, nil, err
	}
	tcp = c.ConnectionState().PeerCertificates[0]
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, http3.ConfigureTLSConfig(cfg.Clone()), nil)
	if err != nil {
		return nil, nil, err
	}
	h3 = qc.ConnectionState().TLS.PeerCertificates[0]
	qc.CloseWithError(0, "")
	return tcp, h3, nil
}
