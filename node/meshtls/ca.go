package meshtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names inside a CA directory.
const (
	// CACertFile is the name of the CA certificate file in a CA directory.
	CACertFile = "ca.pem"
	// CAKeyFile is the name of the CA private key file in a CA directory.
	CAKeyFile = "ca-key.pem"
)

const (
	// clockSkew is how far NotBefore is backdated on issued certificates,
	// so that verifiers whose clocks lag the issuer's accept them at once.
	clockSkew = 5 * time.Minute

	// maxHosts bounds the number of host SANs on one node certificate.
	maxHosts = 64

	// caOrganization is the subject organization of generated
	// certificates; it is informational only.
	caOrganization = "Petrel mesh"
)

// CA is a mesh certificate authority: its certificate and the signer for
// its private key. Create one with [NewDevCA] or [LoadCA]. A CA is safe for
// concurrent use.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer

	// now is the clock used for issuing; tests replace it.
	now func() time.Time
}

// devCAMu serializes NewDevCA within a process, so that the goroutines of
// a `petrel dev` mesh sharing one directory do not race to create it.
var devCAMu sync.Mutex

// NewDevCA returns the mesh CA stored in dir, creating it first when dir
// holds neither CACertFile nor CAKeyFile. A new CA is a self-signed ECDSA
// P-256 certificate valid from now (less clockSkew) for validFor; dir is
// created with mode 0700 when missing, the key is written with mode 0600.
//
// It is idempotent: when both files exist the CA is loaded with [LoadCA]
// (validFor is then ignored), so every process of a development mesh may
// call it. When only one of the two files exists it fails rather than
// overwrite anything. Files are created with no-clobber semantics, so two
// processes racing to create the same CA cannot leave a key that does not
// match its certificate: the loser gets an error and can call [LoadCA].
func NewDevCA(dir string, validFor time.Duration) (*CA, error) {
	if dir == "" {
		return nil, errors.New("meshtls: CA directory is empty")
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("meshtls: CA validity %v must be positive", validFor)
	}
	devCAMu.Lock()
	defer devCAMu.Unlock()

	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certExists, err := fileExists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := fileExists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return LoadCA(dir)
	case certExists:
		return nil, fmt.Errorf("meshtls: %s exists but %s does not; restore the key or remove the certificate to create a new CA", certPath, keyPath)
	case keyExists:
		return nil, fmt.Errorf("meshtls: %s exists but %s does not; restore the certificate or remove the key to create a new CA", keyPath, certPath)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("meshtls: create CA directory: %w", err)
	}
	ca, certPEM, keyPEM, err := generateCA(dir, time.Now(), validFor)
	if err != nil {
		return nil, err
	}
	// The key goes first: a crash between the two writes leaves a lone key,
	// which NewDevCA reports instead of silently pairing it with a new
	// certificate.
	if err := writeFileNoClobber(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileNoClobber(certPath, certPEM, 0o644); err != nil {
		// We created the key a moment ago; do not leave it alone.
		_ = os.Remove(keyPath)
		return nil, err
	}
	return ca, nil
}

// generateCA creates a CA key and self-signed certificate in memory.
func generateCA(dir string, now time.Time, validFor time.Duration) (*CA, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("meshtls: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{caOrganization}, CommonName: "Petrel mesh CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("meshtls: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("meshtls: parse new CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("meshtls: encode CA key: %w", err)
	}
	ca := &CA{dir: dir, cert: cert, key: key, now: time.Now}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return ca, certPEM, keyPEM, nil
}

// LoadCA loads the mesh CA stored in dir (CACertFile and CAKeyFile). It
// fails with an error naming the file and the problem when a file is
// missing, larger than maxPEMFileSize, not the expected PEM, not a CA
// certificate, when the key does not match the certificate, when the key
// file is readable by group or others, or when the CA has expired.
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certPEM, err := readPEMFile(certPath)
	if err != nil {
		return nil, err
	}
	if err := checkPrivateFile(keyPath); err != nil {
		return nil, err
	}
	keyPEM, err := readPEMFile(keyPath)
	if err != nil {
		return nil, err
	}
	cert, key, err := parseCA(certPEM, keyPEM, time.Now())
	if err != nil {
		return nil, fmt.Errorf("meshtls: CA in %s: %w", dir, err)
	}
	return &CA{dir: dir, cert: cert, key: key, now: time.Now}, nil
}

// parseCA validates a CA certificate and key given as PEM at time now.
// It is the decoder behind LoadCA and never panics on any input.
func parseCA(certPEM, keyPEM []byte, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	if len(certs) != 1 {
		return nil, nil, fmt.Errorf("%s: holds %d certificates, want exactly 1", CACertFile, len(certs))
	}
	cert := certs[0]
	if err := checkCACert(cert); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	if now.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("%s: CA certificate expired at %s; remove the CA files to create a new development CA", CACertFile, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return nil, nil, fmt.Errorf("%s: CA certificate is not valid before %s (check the clock)", CACertFile, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("%s does not match the public key in %s", CAKeyFile, CACertFile)
	}
	return cert, key, nil
}

// checkCACert reports whether cert may act as the mesh CA.
func checkCACert(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA (basic constraints CA:TRUE missing)", cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA certificate %q lacks the certSign key usage", cert.Subject.CommonName)
	}
	return nil
}

// publicKeysEqual compares two public keys of any standard type.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// Certificate returns the CA certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertFile returns the path of the CA certificate file, the caFile
// argument of [ServerConfig] and [ClientConfig].
func (ca *CA) CertFile() string { return filepath.Join(ca.dir, CACertFile) }

// IssueNode issues a certificate for node nodeID, valid for validFor (cut
// at the CA's own expiry), and writes it to <dir>/<nodeID>.pem with its
// private key in <dir>/<nodeID>-key.pem (mode 0600), creating dir with
// mode 0700 when missing and replacing earlier files atomically.
//
// The certificate is usable as both a TLS server and a TLS client
// certificate. Its SANs are the hosts (each an IP address or a DNS name)
// and the URI petrel://node/<nodeID>, which [PeerID] reads back. hosts may
// be empty for a node that only dials out or that peers verify by node ID
// alone. nodeID must satisfy [ValidateNodeID].
func (ca *CA) IssueNode(nodeID string, hosts []string, dir string, validFor time.Duration) (certFile, keyFile string, err error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return "", "", err
	}
	if dir == "" {
		return "", "", errors.New("meshtls: node certificate directory is empty")
	}
	if validFor <= 0 {
		return "", "", fmt.Errorf("meshtls: certificate validity %v must be positive", validFor)
	}
	ips, dnsNames, err := splitHosts(hosts)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("meshtls: generate node key: %w", err)
	}
	der, err := ca.signNode(nodeID, dnsNames, ips, &key.PublicKey, validFor)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("meshtls: encode node key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("meshtls: create certificate directory: %w", err)
	}
	certFile = filepath.Join(dir, nodeID+".pem")
	keyFile = filepath.Join(dir, nodeID+"-key.pem")
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// signNode issues the node certificate for pub (DER): server and client
// auth, the URI SAN petrel://node/<nodeID>, the hosts as SANs, valid for
// validFor from now and cut at the CA's own expiry.
func (ca *CA) signNode(nodeID string, dnsNames []string, ips []net.IP, pub crypto.PublicKey, validFor time.Duration) ([]byte, error) {
	now := ca.now()
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("meshtls: CA certificate expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{caOrganization}, CommonName: nodeID},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		URIs:                  []*url.URL{nodeURI(nodeID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("meshtls: sign certificate for node %q: %w", nodeID, err)
	}
	return der, nil
}

// splitHosts validates hosts and sorts them into IP and DNS SANs,
// dropping duplicates.
func splitHosts(hosts []string) ([]net.IP, []string, error) {
	if len(hosts) > maxHosts {
		return nil, nil, fmt.Errorf("meshtls: %d hosts, at most %d allowed", len(hosts), maxHosts)
	}
	var ips []net.IP
	var names []string
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("meshtls: host %q: IP addresses with a zone cannot be certified", h)
			}
			ip = ip.Unmap()
			if key := ip.String(); !seen[key] {
				seen[key] = true
				ips = append(ips, ip.AsSlice())
			}
			continue
		}
		if err := validateDNSName(h); err != nil {
			return nil, nil, fmt.Errorf("meshtls: host %q: %w", h, err)
		}
		if !seen[h] {
			seen[h] = true
			names = append(names, h)
		}
	}
	return ips, names, nil
}

// validateDNSName accepts an LDH host name: dot-separated labels of 1..63
// letters, digits and hyphens, not starting or ending with a hyphen, at
// most 253 characters in all. Wildcards and trailing dots are refused.
func validateDNSName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > 253 {
		return fmt.Errorf("host name is %d characters, at most 253 allowed", len(name))
	}
	labelLen := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if labelLen == 0 {
				return errors.New("empty label in host name")
			}
			if name[i-1] == '-' {
				return errors.New("host name label ends with a hyphen")
			}
			labelLen = 0
			continue
		case c == '-':
			if labelLen == 0 {
				return errors.New("host name label starts with a hyphen")
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			return fmt.Errorf("invalid character %q in host name (want letters, digits, '-' and '.')", c)
		}
		labelLen++
		if labelLen > 63 {
			return errors.New("host name label longer than 63 characters")
		}
	}
	if labelLen == 0 {
		return errors.New("host name ends with a dot")
	}
	if name[len(name)-1] == '-' {
		return errors.New("host name label ends with a hyphen")
	}
	return nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("meshtls: generate serial number: %w", err)
	}
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	return serial, nil
}

// fileExists reports whether path exists, treating only "not exist" as
// absence so that permission problems surface as errors.
func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("meshtls: %w", err)
	}
}
