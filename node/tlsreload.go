package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/meshtls"
)

// TLS material is held in a tlsState that ReloadTLS swaps whole, so that
// certificates, keys and the mesh CA can be replaced without a restart
// (SIGHUP in `petrel node`). The listeners and the mesh client use
// configurations whose callbacks read the current state at each
// handshake; connections already open keep the certificates they were
// made with.
type tlsState struct {
	tcp, h3    *tls.Config      // what the TCP (h2, HTTP/1.1) and QUIC listeners present
	clientCert *tls.Certificate // the mesh client certificate; nil without a mesh
	roots      *x509.CertPool   // the mesh CA peers' certificates must chain to
}

// loadTLS reads (or, for a development CA directory or without files,
// generates) the node's TLS material.
func (n *Node) loadTLS(host string) (*tlsState, error) {
	var server *tls.Config
	st := &tlsState{}
	if n.cfg.Mesh.Enabled {
		// Mutual TLS: peers present mesh certificates, public clients
		// need none (see node/meshtls).
		var client *tls.Config
		var err error
		server, client, err = n.meshTLS(host)
		if err != nil {
			return nil, err
		}
		st.clientCert = &client.Certificates[0]
		st.roots = client.RootCAs
	} else {
		cert, err := serverCertificate(&n.cfg, host)
		if err != nil {
			return nil, err
		}
		server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	st.tcp = server.Clone()
	st.tcp.NextProtos = []string{"h2", "http/1.1"}
	st.h3 = h3TLS(server)
	return st, nil
}

// serverTLSConfigs returns the listeners' configurations: each hands the
// current state's configuration to every new handshake.
func (n *Node) serverTLSConfigs() (tcp, h3 *tls.Config) {
	tcp = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return n.tls.Load().tcp, nil
		},
	}
	h3 = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return n.tls.Load().h3, nil
		},
	}
	return tcp, h3
}

// meshClientTLS returns the configuration for dialing peers and the
// central tier: the current mesh certificate is presented (reloadable),
// and the peer's certificate is verified by crypto/tls against the mesh CA
// the node started with, and the dialed name or address. The roots stay
// fixed because crypto/tls's own verification is the one that checks an
// IP address the node dialed (no SNI is sent for one, so a
// VerifyConnection callback could not see it); a new CA is trusted for
// dialing after a restart, which is why CA rotation goes through a CA
// file holding both the old and the new CA (docs/deploy.md).
func (n *Node) meshClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    n.tls.Load().roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return n.tls.Load().clientCert, nil
		},
	}
}

// ReloadTLS re-reads the TLS certificate and key files and the mesh CA,
// and uses them for every new connection: the certificates presented, and
// the CA that peers' client certificates must chain to (the CA used to
// verify peers this node dials is the one it started with, see
// meshClientTLS). On any error the node keeps the
// material it has and the error says what is wrong. A node with a
// generated development certificate (no files) has nothing to reload.
func (n *Node) ReloadTLS() error {
	if n.tls.Load() == nil {
		return errors.New("node not started")
	}
	if !n.cfg.Mesh.Enabled && n.cfg.CertFile == "" {
		return nil
	}
	st, err := n.loadTLS(n.tlsHost)
	if err != nil {
		return err
	}
	n.tls.Store(st)
	n.log.Info("TLS certificates reloaded")
	return nil
}

// CheckFiles validates cfg and loads every file it names as Start would,
// without binding anything or loading models: TLS and mesh certificates
// (which must chain to the mesh CA), the ONNX Runtime library (found, not
// loaded),
// the model repository directory. It is `petrel node --check-config`.
func CheckFiles(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	if cfg.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("--tls-cert/--tls-key: %w", err))
		}
	}
	mc := cfg.Mesh
	switch {
	case mc.TLSDir != "":
		if _, err := meshtls.LoadCA(mc.TLSDir); err != nil {
			errs = append(errs, fmt.Errorf("--mesh-tls-dir: %w", err))
		}
	case mc.CertFile != "":
		if _, err := meshtls.ServerConfig(mc.CertFile, mc.KeyFile, mc.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("mesh TLS: %w", err))
		} else if _, err := meshtls.ClientConfig(mc.CertFile, mc.KeyFile, mc.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("mesh TLS: %w", err))
		}
	}
	if cfg.ModelRepository != "" {
		if fi, err := os.Stat(cfg.ModelRepository); err != nil {
			errs = append(errs, fmt.Errorf("--model-repo: %w", err))
		} else if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--model-repo %s is not a directory", cfg.ModelRepository))
		}
	}
	if _, err := ort.FindLibrary(cfg.ORTLibrary); err != nil {
		errs = append(errs, fmt.Errorf("ONNX Runtime library: %w", err))
	}
	return errors.Join(errs...)
}
