package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DevCertificate generates a self-signed ECDSA P-256 certificate for
// local use, valid for localhost, 127.0.0.1 and ::1 plus extra hosts, and
// returns it with its PEM encodings. Never use it outside development.
func DevCertificate(extraHosts ...string) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Petrel development"}, CommonName: "petrel-dev"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range extraHosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, keyPEM, err
}

// serverCertificate loads the configured certificate or generates a
// development one (written to DevCertDir when set).
func serverCertificate(cfg *Config, host string) (tls.Certificate, error) {
	if cfg.CertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return c, fmt.Errorf("tls: load %s / %s: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		return c, nil
	}
	c, certPEM, keyPEM, err := DevCertificate(host)
	if err != nil {
		return c, fmt.Errorf("tls: generate development certificate: %w", err)
	}
	if cfg.DevCertDir != "" {
		if err := os.MkdirAll(cfg.DevCertDir, 0o700); err != nil {
			return c, err
		}
		if err := os.WriteFile(filepath.Join(cfg.DevCertDir, "cert.pem"), certPEM, 0o644); err != nil {
			return c, err
		}
		if err := os.WriteFile(filepath.Join(cfg.DevCertDir, "key.pem"), keyPEM, 0o600); err != nil {
			return c, err
		}
	}
	return c, nil
}
