package meshtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Enrolment: a node generates its key and a certificate signing request
// (CSR) with [NewNodeCSR], sends the CSR to the coordinator, and the
// coordinator issues the certificate with [CA.SignNodeCSR]. The private
// key never leaves the node.

// maxCSRSize bounds a PEM certificate signing request; real ones are well
// under a kilobyte for ECDSA keys and a few kilobytes for RSA keys.
const maxCSRSize = 64 << 10

// minRSABits is the smallest RSA modulus SignNodeCSR certifies.
const minRSABits = 2048

// CSRError is the error [CA.SignNodeCSR] returns when the request itself
// is at fault (a malformed or wrongly signed CSR, an unsupported key, a bad
// node ID or host); a server answering a CSR reports it as a client error.
// Other errors (an expired CA, a failure to sign) are the issuer's.
type CSRError struct {
	Msg string
}

func (e *CSRError) Error() string { return e.Msg }

func csrErrorf(format string, a ...any) error {
	return &CSRError{Msg: "meshtls: " + fmt.Sprintf(format, a...)}
}

// NewNodeCSR generates an ECDSA P-256 key for node nodeID and a
// certificate signing request for it. It returns the key as PKCS #8 PEM
// ("PRIVATE KEY", to be stored with mode 0600) and the CSR as PEM
// ("CERTIFICATE REQUEST"). The CSR's subject common name and URI SAN name
// the node, as a hint only: [CA.SignNodeCSR] takes the identity and the
// host SANs from its arguments, never from the CSR.
func NewNodeCSR(nodeID string) (keyPEM, csrPEM []byte, err error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("meshtls: generate node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{caOrganization}, CommonName: nodeID},
		URIs:    []*url.URL{nodeURI(nodeID)},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("meshtls: create certificate request: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("meshtls: encode node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR decodes exactly one PEM certificate signing request (block type
// "CERTIFICATE REQUEST", or the legacy "NEW CERTIFICATE REQUEST"), checks
// its self-signature, proving that the requester holds the private key,
// and checks that the key is one the mesh accepts: ECDSA on P-256, P-384
// or P-521, Ed25519, or RSA of at least 2048 bits. Errors are *CSRError.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) > maxCSRSize {
		return nil, csrErrorf("certificate request is %d bytes, at most %d allowed", len(csrPEM), maxCSRSize)
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, csrErrorf("no PEM certificate request found (want a CERTIFICATE REQUEST block)")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, csrErrorf("unexpected PEM block %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, csrErrorf("trailing data after the PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, csrErrorf("parse certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, csrErrorf("certificate request signature does not verify: %v", err)
	}
	if err := checkLeafKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

// checkLeafKey accepts the public key types and sizes node certificates
// may carry.
func checkLeafKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return csrErrorf("ECDSA key on curve %s is not accepted (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return csrErrorf("RSA key of %d bits is too small (at least %d)", k.N.BitLen(), minRSABits)
		}
		return nil
	default:
		return csrErrorf("public key of type %T is not accepted (want ECDSA, Ed25519 or RSA)", pub)
	}
}

// SignNodeCSR issues a certificate for node nodeID to the holder of the
// key in the PEM certificate signing request csrPEM, valid for validFor
// (cut at the CA's own expiry), and returns it as PEM.
//
// The certificate is the same as [CA.IssueNode] issues, except that the
// key is the requester's: usable as both a TLS server and a TLS client
// certificate, with the URI SAN petrel://node/<nodeID> and the hosts (IP
// addresses or DNS names) as SANs. Only the CSR's public key is used; its
// subject, SANs and extensions are ignored, so the issuer alone decides
// what the certificate asserts. The CSR is checked as [ParseCSR] does.
//
// Errors the request causes (CSR, node ID, hosts) are *CSRError.
func (ca *CA) SignNodeCSR(csrPEM []byte, nodeID string, hosts []string, validFor time.Duration) ([]byte, error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return nil, &CSRError{Msg: err.Error()}
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("meshtls: certificate validity %v must be positive", validFor)
	}
	ips, dnsNames, err := splitHosts(hosts)
	if err != nil {
		return nil, &CSRError{Msg: err.Error()}
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	der, err := ca.signNode(nodeID, dnsNames, ips, csr.PublicKey, validFor)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// CertificatePEM returns the CA certificate as PEM, the file nodes give as
// their mesh CA (--mesh-ca).
func (ca *CA) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// IsCSRError reports whether err is (or wraps) a *CSRError.
func IsCSRError(err error) bool {
	var e *CSRError
	return errors.As(err, &e)
}
