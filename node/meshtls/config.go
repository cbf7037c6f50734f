package meshtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Node identity URIs have the form petrel://node/<nodeID>.
const (
	uriScheme = "petrel"
	uriHost   = "node"
)

// maxNodeIDLen is the longest node ID accepted; IDs travel in gossip
// metadata, which memberlist caps at 512 bytes in all.
const maxNodeIDLen = 64

// nextProtos is what a node's listener offers, in preference order. The
// same certificate and config back the HTTP/3 (QUIC) and the HTTP/2 and
// HTTP/1.1 (TCP) listeners; quic-go's http3 package narrows it to h3.
var nextProtos = []string{"h3", "h2", "http/1.1"}

// ValidateNodeID reports whether id can name a node: 1 to 64 characters
// from [A-Za-z0-9._-], and not "." or "..". The same rule keeps IDs safe
// as file names (IssueNode writes <id>.pem) and inside URIs without
// escaping.
func ValidateNodeID(id string) error {
	if id == "" {
		return errors.New("meshtls: node ID is empty")
	}
	if len(id) > maxNodeIDLen {
		return fmt.Errorf("meshtls: node ID is %d characters, at most %d allowed", len(id), maxNodeIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("meshtls: node ID %q: invalid character %q (want letters, digits, '.', '_' and '-')", id, c)
		}
	}
	if strings.Trim(id, ".") == "" {
		return fmt.Errorf("meshtls: node ID %q is not allowed", id)
	}
	return nil
}

// nodeURI returns petrel://node/<nodeID> for a valid node ID.
func nodeURI(nodeID string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriHost, Path: "/" + nodeID}
}

// ServerConfig returns the TLS configuration for a node's listeners. The
// node presents the certificate in certFile (with its key in keyFile) and
// asks clients for a certificate without requiring one
// (tls.VerifyClientCertIfGiven): public clients without a certificate
// complete the handshake, while a presented certificate must chain to the
// CA in caFile or the handshake fails. It offers h3, h2 and http/1.1 and
// only TLS 1.3.
//
// The files are read and checked now: the certificate must verify against
// the CA for server use at the current time, so an expired or foreign
// certificate fails here rather than at every handshake. The returned
// config holds the certificate in memory; re-issued files take effect when
// ServerConfig is called again.
func ServerConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := loadNodeCert(certFile, keyFile, pool, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		NextProtos:   append([]string(nil), nextProtos...),
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// ClientConfig returns the TLS configuration for dialing peers: the node
// presents the certificate in certFile (key in keyFile) and verifies the
// peer's server certificate against the CA in caFile only, not the system
// roots. Only TLS 1.3 is offered. NextProtos is left empty for the
// transport to fill in: quic-go's http3.Transport sets h3, and an
// http.Transport needs ForceAttemptHTTP2 to offer h2 with a custom config.
// ServerName is empty too; crypto/tls takes it from the dialed address,
// so dial peers by a host name or IP address listed in their certificate.
//
// The files are checked now as in [ServerConfig], for client use.
func ClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := loadNodeCert(certFile, keyFile, pool, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// PeerID returns the node ID in the petrel://node/<nodeID> URI SAN of the
// peer's certificate, and whether there is one. It answers only for a
// certificate that crypto/tls verified against the configured CA (state
// has VerifiedChains), so a certificate that was merely presented, or a
// connection without one, yields ("", false). A certificate with no node
// URI, with a malformed one, or with two different ones yields false too.
//
// On a server built with [ServerConfig], use it with http.Request.TLS (the
// same for HTTP/1.1, HTTP/2 and quic-go's HTTP/3) to decide whether mesh
// headers such as the hop count come from a mesh peer.
func PeerID(state *tls.ConnectionState) (string, bool) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	id := ""
	for _, u := range leaf.URIs {
		if u == nil || u.Scheme != uriScheme || u.Host != uriHost {
			continue
		}
		candidate, ok := strings.CutPrefix(u.Path, "/")
		if !ok || u.RawQuery != "" || u.Fragment != "" || u.User != nil || ValidateNodeID(candidate) != nil {
			return "", false
		}
		if id != "" && id != candidate {
			return "", false
		}
		id = candidate
	}
	return id, id != ""
}

// loadCAPool reads a PEM bundle of CA certificates into a pool.
func loadCAPool(caFile string) (*x509.CertPool, error) {
	data, err := readPEMFile(caFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("meshtls: CA file %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if err := checkCACert(c); err != nil {
			return nil, fmt.Errorf("meshtls: CA file %s: %w", caFile, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// loadNodeCert loads a certificate and key and verifies the certificate
// against pool for usage at the current time.
func loadNodeCert(certFile, keyFile string, pool *x509.CertPool, usage x509.ExtKeyUsage) (tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkPrivateFile(keyFile); err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := parseCertificates(certPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("meshtls: certificate file %s: %w", certFile, err)
	}
	if _, err := parsePrivateKey(keyPEM); err != nil {
		return tls.Certificate{}, fmt.Errorf("meshtls: key file %s: %w", keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("meshtls: %s and %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("meshtls: certificate file %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	intermediates := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("meshtls: certificate file %s: %w", certFile, err)
		}
		intermediates.AddCert(c)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("meshtls: certificate %s expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return tls.Certificate{}, fmt.Errorf("meshtls: certificate %s does not verify against the mesh CA: %w", certFile, err)
	}
	return cert, nil
}
