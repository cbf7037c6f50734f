package meshtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds every network wait in these tests; it is a protocol
// safety net, never a performance assertion.
const testTimeout = 10 * time.Second

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewDevCA(filepath.Join(t.TempDir(), "ca"), 24*time.Hour)
	if err != nil {
		t.Fatalf("NewDevCA: %v", err)
	}
	return ca
}

// nodeFiles holds the files of one issued node certificate.
type nodeFiles struct{ cert, key string }

func issue(t *testing.T, ca *CA, nodeID string) nodeFiles {
	t.Helper()
	certFile, keyFile, err := ca.IssueNode(nodeID, []string{"127.0.0.1", "localhost"}, filepath.Join(t.TempDir(), "certs"), time.Hour)
	if err != nil {
		t.Fatalf("IssueNode(%q): %v", nodeID, err)
	}
	return nodeFiles{certFile, keyFile}
}

func mustServerConfig(t *testing.T, ca *CA, n nodeFiles) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(n.cert, n.key, ca.CertFile())
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return cfg
}

func mustClientConfig(t *testing.T, ca *CA, n nodeFiles) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(n.cert, n.key, ca.CertFile())
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	return cfg
}

// caPool returns a pool holding only ca's certificate.
func caPool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

// loadPair loads a certificate without any of this package's checks, to
// build configs that ServerConfig and ClientConfig would refuse.
func loadPair(t *testing.T, n nodeFiles) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(n.cert, n.key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake is the server side's view of one TLS connection.
type handshake struct {
	state tls.ConnectionState
	err   error
}

// serveTLS listens on loopback with cfg, completes the handshake of each
// accepted connection, reports it on the returned channel and, on
// success, writes "ok" to the client.
func serveTLS(t *testing.T, cfg *tls.Config) (string, <-chan handshake) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan handshake, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(testTimeout))
			err = tc.Handshake()
			results <- handshake{state: tc.ConnectionState(), err: err}
			if err == nil {
				_, _ = tc.Write([]byte("ok"))
			}
			_ = tc.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String(), results
}

// dialTLS connects with cfg, completes the handshake and reads the
// server's "ok". It returns the client's connection state and the first
// error. In TLS 1.3 the server checks the client certificate after the
// client's handshake finished, so a rejection shows up on the read.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: testTimeout}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return c.ConnectionState(), err
	}
	if string(buf) != "ok" {
		return c.ConnectionState(), errors.New("unexpected server reply " + string(buf))
	}
	return c.ConnectionState(), nil
}

func receive(t *testing.T, ch <-chan handshake) handshake {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(testTimeout):
		t.Fatal("server saw no handshake")
		return handshake{}
	}
}

func TestFilesHaveSafePermissions(t *testing.T) {
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	ca, err := NewDevCA(caDir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(root, "certs")
	certFile, keyFile, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, certDir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(certDir, "node-1.pem"); certFile != want {
		t.Errorf("certFile = %q, want %q", certFile, want)
	}
	if want := filepath.Join(certDir, "node-1-key.pem"); keyFile != want {
		t.Errorf("keyFile = %q, want %q", keyFile, want)
	}
	for path, want := range map[string]fs.FileMode{
		caDir:                            0o700 | fs.ModeDir,
		filepath.Join(caDir, CAKeyFile):  0o600,
		filepath.Join(caDir, CACertFile): 0o644,
		certDir:                          0o700 | fs.ModeDir,
		keyFile:                          0o600,
		certFile:                         0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	// No temporary files are left behind.
	for _, dir := range []string{caDir, certDir} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s holds %v, want exactly two files", dir, names)
		}
	}
}

func TestNewDevCAIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first, err := NewDevCA(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	second, err := NewDevCA(dir, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Certificate().Equal(second.Certificate()) {
		t.Error("second NewDevCA created a new CA instead of loading the existing one")
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("second NewDevCA rewrote the CA key")
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(first.Certificate()) {
		t.Error("LoadCA returned a different certificate")
	}
	// A certificate issued by the loaded CA verifies against the original.
	n := issue(t, loaded, "n1")
	if _, err := ClientConfig(n.cert, n.key, first.CertFile()); err != nil {
		t.Errorf("certificate from loaded CA does not verify: %v", err)
	}
}

func TestNewDevCARefusesLoneFile(t *testing.T) {
	for _, remove := range []string{CAKeyFile, CACertFile} {
		t.Run(remove, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := NewDevCA(dir, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, remove)); err != nil {
				t.Fatal(err)
			}
			_, err := NewDevCA(dir, time.Hour)
			if err == nil || !strings.Contains(err.Error(), "does not") {
				t.Fatalf("NewDevCA with %s missing: err = %v, want an error naming the missing file", remove, err)
			}
			if _, err := os.Stat(filepath.Join(dir, remove)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("NewDevCA recreated %s next to an existing file", remove)
			}
		})
	}
}

func TestNewDevCAValidation(t *testing.T) {
	if _, err := NewDevCA("", time.Hour); err == nil {
		t.Error("NewDevCA(\"\") succeeded")
	}
	if _, err := NewDevCA(t.TempDir(), 0); err == nil {
		t.Error("NewDevCA with zero validity succeeded")
	}
	if _, err := NewDevCA(t.TempDir(), -time.Hour); err == nil {
		t.Error("NewDevCA with negative validity succeeded")
	}
}

func TestLoadCAErrors(t *testing.T) {
	good := newTestCA(t)
	goodCert, err := os.ReadFile(good.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	goodKey, err := os.ReadFile(filepath.Join(good.dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(newTestCA(t).dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf := issue(t, good, "leaf")
	leafCert, err := os.ReadFile(leaf.cert)
	if err != nil {
		t.Fatal(err)
	}
	_, expiredCert, expiredKey, err := generateCA("", time.Now().Add(-48*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		cert, key []byte
		keyMode   fs.FileMode
		want      string
	}{
		{"garbage cert", []byte("hello, world\n"), goodKey, 0o600, "no PEM certificate found"},
		{"empty cert", nil, goodKey, 0o600, "file is empty"},
		{"key in cert file", goodKey, goodKey, 0o600, `unexpected PEM block "PRIVATE KEY"`},
		{"two certs", append(append([]byte{}, goodCert...), goodCert...), goodKey, 0o600, "holds 2 certificates"},
		{"trailing junk", append(append([]byte{}, goodCert...), "junk"...), goodKey, 0o600, "trailing data"},
		{"corrupt DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), goodKey, 0o600, "certificate 1"},
		{"leaf as CA", leafCert, goodKey, 0o600, "is not a CA"},
		{"garbage key", goodCert, []byte("\x00\x01binary"), 0o600, "no PEM private key found"},
		{"cert in key file", goodCert, goodCert, 0o600, `unexpected PEM block "CERTIFICATE"`},
		{"corrupt key", goodCert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600, "parse private key"},
		{"mismatched key", goodCert, otherKey, 0o600, "does not match"},
		{"world-readable key", goodCert, goodKey, 0o644, "must not be accessible"},
		{"expired CA", expiredCert, expiredKey, 0o600, "expired at"},
		{"oversized cert", bytes.Repeat([]byte("A"), maxPEMFileSize+1), goodKey, 0o600, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, CACertFile), tc.cert, 0o644); err != nil {
				t.Fatal(err)
			}
			keyPath := filepath.Join(dir, CAKeyFile)
			if err := os.WriteFile(keyPath, tc.key, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyPath, tc.keyMode); err != nil {
				t.Fatal(err)
			}
			ca, err := LoadCA(dir)
			if err == nil {
				t.Fatalf("LoadCA succeeded (%v), want error containing %q", ca.Certificate().Subject, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadCA error = %q, want it to contain %q", err, tc.want)
			}
			// NewDevCA loads existing files the same way and never
			// replaces them.
			if _, err := NewDevCA(dir, time.Hour); err == nil {
				t.Fatal("NewDevCA accepted the bad CA files")
			}
		})
	}

	t.Run("missing directory", func(t *testing.T) {
		_, err := LoadCA(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadCA of a missing directory: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("directory as file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, CACertFile), 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := LoadCA(dir)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("LoadCA with ca.pem a directory: %v", err)
		}
	})
}

func TestIssueNodeCertificate(t *testing.T) {
	ca := newTestCA(t)
	hosts := []string{"127.0.0.1", "::1", "localhost", "node-7.edge.example", "127.0.0.1", "::ffff:10.1.2.3"}
	certFile, _, err := ca.IssueNode("node-7", hosts, t.TempDir(), 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCertificates(data)
	if err != nil || len(certs) != 1 {
		t.Fatalf("parse issued certificate: %v (%d certs)", err, len(certs))
	}
	c := certs[0]
	if c.IsCA {
		t.Error("node certificate is a CA")
	}
	if got := len(c.URIs); got != 1 || c.URIs[0].String() != "petrel://node/node-7" {
		t.Errorf("URIs = %v, want [petrel://node/node-7]", c.URIs)
	}
	if got := strings.Join(c.DNSNames, ","); got != "localhost,node-7.edge.example" {
		t.Errorf("DNSNames = %q", got)
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if got := strings.Join(ips, ","); got != "127.0.0.1,::1,10.1.2.3" {
		t.Errorf("IPAddresses = %q, want duplicates removed and mapped addresses unmapped", got)
	}
	usages := map[x509.ExtKeyUsage]bool{}
	for _, u := range c.ExtKeyUsage {
		usages[u] = true
	}
	if !usages[x509.ExtKeyUsageServerAuth] || !usages[x509.ExtKeyUsageClientAuth] || len(usages) != 2 {
		t.Errorf("ExtKeyUsage = %v, want ServerAuth and ClientAuth", c.ExtKeyUsage)
	}
	if !c.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter = %v, want it cut to the CA's %v", c.NotAfter, ca.Certificate().NotAfter)
	}
	if c.NotBefore.After(time.Now().Add(-clockSkew + time.Minute)) {
		t.Errorf("NotBefore = %v is not backdated by %v", c.NotBefore, clockSkew)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(ca), KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "node-7.edge.example"}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
}

func TestIssueNodeReplacesFiles(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, err := ca.IssueNode("n", nil, dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(certFile)
	if _, _, err := ca.IssueNode("n", nil, dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(certFile)
	if bytes.Equal(first, second) {
		t.Error("re-issue did not replace the certificate")
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("re-issued pair does not match: %v", err)
	}
}

func TestIssueNodeValidation(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	badIDs := []string{"", "a/b", "..", ".", "node 1", "nöde", strings.Repeat("a", 65), "a\x00b", "../../etc/passwd"}
	for _, id := range badIDs {
		if _, _, err := ca.IssueNode(id, nil, dir, time.Hour); err == nil {
			t.Errorf("IssueNode(%q) succeeded", id)
		}
	}
	badHosts := []string{"", "-a.example", "a-.example", "a..b", "*.example", "a_b", "host.", "fe80::1%eth0", strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 127) + "ab"}
	for _, h := range badHosts {
		if _, _, err := ca.IssueNode("n", []string{h}, dir, time.Hour); err == nil {
			t.Errorf("IssueNode with host %q succeeded", h)
		}
	}
	if _, _, err := ca.IssueNode("n", make([]string, maxHosts+1), dir, time.Hour); err == nil {
		t.Error("IssueNode with too many hosts succeeded")
	}
	if _, _, err := ca.IssueNode("n", nil, dir, 0); err == nil {
		t.Error("IssueNode with zero validity succeeded")
	}
	if _, _, err := ca.IssueNode("n", nil, "", time.Hour); err == nil {
		t.Error("IssueNode with empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed IssueNode calls left %d files behind", len(entries))
	}
	ca.now = func() time.Time { return ca.Certificate().NotAfter.Add(time.Second) }
	if _, _, err := ca.IssueNode("n", nil, dir, time.Hour); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("IssueNode by an expired CA: %v", err)
	}
}

func TestValidateNodeID(t *testing.T) {
	for _, id := range []string{"a", "node-1", "A.b_c-9", "...a", strings.Repeat("z", 64)} {
		if err := ValidateNodeID(id); err != nil {
			t.Errorf("ValidateNodeID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "...", "a:b", "a/b", "a%2f", strings.Repeat("z", 65)} {
		if err := ValidateNodeID(id); err == nil {
			t.Errorf("ValidateNodeID(%q) accepted", id)
		}
	}
}

func TestPeerWithCertificateGetsPeerID(t *testing.T) {
	ca := newTestCA(t)
	server, client := issue(t, ca, "server-node"), issue(t, ca, "client.node_2")
	addr, results := serveTLS(t, mustServerConfig(t, ca, server))

	state, err := dialTLS(t, addr, mustClientConfig(t, ca, client))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	h := receive(t, results)
	if h.err != nil {
		t.Fatalf("server handshake: %v", h.err)
	}
	if id, ok := PeerID(&h.state); !ok || id != "client.node_2" {
		t.Errorf("server: PeerID = %q, %v; want client.node_2, true", id, ok)
	}
	if id, ok := PeerID(&state); !ok || id != "server-node" {
		t.Errorf("client: PeerID = %q, %v; want server-node, true", id, ok)
	}
	if h.state.Version != tls.VersionTLS13 {
		t.Errorf("negotiated TLS version %x, want TLS 1.3", h.state.Version)
	}
}

func TestClientWithoutCertificateHasNoPeerID(t *testing.T) {
	ca := newTestCA(t)
	addr, results := serveTLS(t, mustServerConfig(t, ca, issue(t, ca, "server-node")))

	state, err := dialTLS(t, addr, &tls.Config{RootCAs: caPool(ca), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("public client rejected: %v", err)
	}
	h := receive(t, results)
	if h.err != nil {
		t.Fatalf("server handshake: %v", h.err)
	}
	if id, ok := PeerID(&h.state); ok {
		t.Errorf("PeerID = %q for a client without a certificate", id)
	}
	if len(h.state.PeerCertificates) != 0 {
		t.Errorf("server saw %d client certificates", len(h.state.PeerCertificates))
	}
	if state.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN = %q, want h2", state.NegotiatedProtocol)
	}
}

func TestServerConfigShape(t *testing.T) {
	ca := newTestCA(t)
	n := issue(t, ca, "n")
	s := mustServerConfig(t, ca, n)
	if s.ClientAuth != tls.VerifyClientCertIfGiven || s.ClientCAs == nil || s.MinVersion != tls.VersionTLS13 {
		t.Errorf("server config: ClientAuth %v, ClientCAs %v, MinVersion %x", s.ClientAuth, s.ClientCAs != nil, s.MinVersion)
	}
	if got := strings.Join(s.NextProtos, ","); got != "h3,h2,http/1.1" {
		t.Errorf("NextProtos = %q", got)
	}
	c := mustClientConfig(t, ca, n)
	if c.RootCAs == nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS13 || c.InsecureSkipVerify {
		t.Errorf("client config: RootCAs %v, %d certificates, MinVersion %x", c.RootCAs != nil, len(c.Certificates), c.MinVersion)
	}
}

func TestForeignCACertificateFailsHandshake(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	addr, results := serveTLS(t, mustServerConfig(t, ca, issue(t, ca, "server-node")))
	foreign := issue(t, other, "intruder")

	// The node refuses to build a client config from a foreign certificate.
	if _, err := ClientConfig(foreign.cert, foreign.key, ca.CertFile()); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("ClientConfig with a foreign certificate: %v", err)
	}
	// A client that presents it anyway is rejected by the server.
	cfg := &tls.Config{RootCAs: caPool(ca), Certificates: []tls.Certificate{loadPair(t, foreign)}}
	if _, err := dialTLS(t, addr, cfg); err == nil {
		t.Fatal("client with a foreign certificate completed the exchange")
	}
	h := receive(t, results)
	if h.err == nil || !strings.Contains(h.err.Error(), "unknown authority") {
		t.Fatalf("server handshake error = %v, want unknown authority", h.err)
	}
	if id, ok := PeerID(&h.state); ok {
		t.Errorf("PeerID = %q for a rejected client", id)
	}

	// A server with a foreign certificate is rejected by a mesh client.
	foreignServer := issue(t, other, "impostor")
	addr2, _ := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{loadPair(t, foreignServer)}, MinVersion: tls.VersionTLS13})
	_, err := dialTLS(t, addr2, mustClientConfig(t, ca, issue(t, ca, "client-node")))
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("mesh client dialing a foreign server: %v, want unknown authority", err)
	}
}

func TestExpiredCertificateIsRejected(t *testing.T) {
	ca := newTestCA(t)
	ca.now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	expired := issue(t, ca, "old-node") // valid for one hour, two hours ago
	ca.now = time.Now

	for name, build := range map[string]func(string, string, string) (*tls.Config, error){"ServerConfig": ServerConfig, "ClientConfig": ClientConfig} {
		if _, err := build(expired.cert, expired.key, ca.CertFile()); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("%s with an expired certificate: %v", name, err)
		}
	}

	// A peer presenting the expired certificate anyway fails the handshake.
	addr, results := serveTLS(t, mustServerConfig(t, ca, issue(t, ca, "server-node")))
	cfg := &tls.Config{RootCAs: caPool(ca), Certificates: []tls.Certificate{loadPair(t, expired)}}
	if _, err := dialTLS(t, addr, cfg); err == nil {
		t.Fatal("client with an expired certificate completed the exchange")
	}
	if h := receive(t, results); h.err == nil || !strings.Contains(h.err.Error(), "expired") {
		t.Fatalf("server handshake error = %v, want certificate expired", h.err)
	}

	// So does a server presenting it.
	addr2, _ := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{loadPair(t, expired)}, MinVersion: tls.VersionTLS13})
	if _, err := dialTLS(t, addr2, mustClientConfig(t, ca, issue(t, ca, "client-node"))); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("client dialing an expired server: %v, want certificate expired", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	ca := newTestCA(t)
	n := issue(t, ca, "n")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(dir, "open-key.pem")
	keyData, _ := os.ReadFile(n.key)
	if err := os.WriteFile(openKey, keyData, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey := issue(t, ca, "other").key

	cases := []struct {
		name              string
		cert, key, caFile string
		want              string
	}{
		{"missing cert", filepath.Join(dir, "none.pem"), n.key, ca.CertFile(), "no such file"},
		{"missing CA", n.cert, n.key, filepath.Join(dir, "none.pem"), "no such file"},
		{"garbage CA", n.cert, n.key, garbage, "no PEM certificate found"},
		{"leaf as CA", n.cert, n.key, n.cert, "is not a CA"},
		{"garbage cert", garbage, n.key, ca.CertFile(), "no PEM certificate found"},
		{"garbage key", n.cert, garbage, ca.CertFile(), "no PEM private key found"},
		{"open key", n.cert, openKey, ca.CertFile(), "must not be accessible"},
		{"mismatched key", n.cert, otherKey, ca.CertFile(), "does not match"},
	}
	for _, tc := range cases {
		for name, build := range map[string]func(string, string, string) (*tls.Config, error){"ServerConfig": ServerConfig, "ClientConfig": ClientConfig} {
			_, err := build(tc.cert, tc.key, tc.caFile)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, %s: error %v, want it to contain %q", tc.name, name, err, tc.want)
			}
		}
	}
}

func TestPeerIDNeedsVerifiedNodeURI(t *testing.T) {
	mk := func(uris ...string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	verified := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	good := mk("spiffe://example/x", "petrel://node/n-1")

	if id, ok := PeerID(verified(good)); !ok || id != "n-1" {
		t.Errorf("verified node URI: %q, %v", id, ok)
	}
	if id, ok := PeerID(verified(mk("petrel://node/n-1", "petrel://node/n-1"))); !ok || id != "n-1" {
		t.Errorf("repeated identical node URI: %q, %v", id, ok)
	}
	for name, st := range map[string]*tls.ConnectionState{
		"nil state":         nil,
		"no certificate":    {},
		"unverified":        {PeerCertificates: []*x509.Certificate{good}},
		"empty chain":       {PeerCertificates: []*x509.Certificate{good}, VerifiedChains: [][]*x509.Certificate{{}}},
		"no URI":            verified(mk()),
		"other scheme":      verified(mk("https://node/n-1")),
		"other host":        verified(mk("petrel://peer/n-1")),
		"empty ID":          verified(mk("petrel://node/")),
		"nested path":       verified(mk("petrel://node/a/b")),
		"query":             verified(mk("petrel://node/a?x=1")),
		"user info":         verified(mk("petrel://u@node/a")),
		"two different IDs": verified(mk("petrel://node/a", "petrel://node/b")),
	} {
		if id, ok := PeerID(st); ok || id != "" {
			t.Errorf("%s: PeerID = %q, %v; want \"\", false", name, id, ok)
		}
	}
}
