package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"go.yaml.in/yaml/v3"
)

// Enrolment (docs/enrol.md): an edge node holding a join token sends
// POST /v1/enrol with its ID and a certificate signing request; the
// coordinator signs a mesh certificate for the node's own key and answers
// with everything the node needs to join: NATS URLs and credentials, the
// coordinator's manifest-signing public key, the mesh CA, gossip keys,
// gossip seeds and fallback URLs. What nodes receive comes from the
// --enrol-config file (EnrolConfig).

// Defaults and limits of enrolment.
const (
	// DefaultCertValidity is the lifetime of enrolled nodes' mesh
	// certificates when cert_validity is not set.
	DefaultCertValidity = 720 * time.Hour
	// minCertValidity and maxCertValidity bound cert_validity.
	minCertValidity = time.Hour
	maxCertValidity = 5 * 365 * 24 * time.Hour
	// maxEnrolBody bounds the body of POST /v1/enrol (a CSR is a few KiB).
	maxEnrolBody = 64 << 10
	// maxEnrolConfigBytes bounds the enrolment config file.
	maxEnrolConfigBytes = 1 << 20
	// maxSecretFileBytes bounds the NATS password and gossip key files.
	maxSecretFileBytes = 64 << 10
	// maxEnrolList bounds nats_url, join and fallback.
	maxEnrolList = 64
	// maxLabelValue bounds a label value (as node status messages do).
	maxLabelValue = 256
)

var (
	enrolRegionRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	enrolLabelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$`)
)

// StringList is a YAML value given either as one string (several items
// separated by commas) or as a sequence of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			break
		}
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case yaml.SequenceNode:
		for _, it := range n.Content {
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				return fmt.Errorf("line %d: want a string", it.Line)
			}
			out = append(out, strings.TrimSpace(it.Value))
		}
	default:
		return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
	}
	*l = out
	return nil
}

// EnrolConfig is the --enrol-config file: what enrolled edge nodes
// receive. Paths that are not absolute are relative to the directory of
// the file they are read from.
type EnrolConfig struct {
	// NATSURL lists the NATS URLs nodes connect to (nats://, tls://, ws://
	// or wss://). Required.
	NATSURL StringList `yaml:"nats_url"`
	// NATSUser and NATSPasswordFile are the NATS credentials nodes get;
	// give both or neither (a NATS without authentication).
	NATSUser         string `yaml:"nats_user"`
	NATSPasswordFile string `yaml:"nats_password_file"`
	// NATSPrefix is the bucket and subject prefix; it must match the
	// coordinator's. Default: the coordinator's.
	NATSPrefix string `yaml:"nats_prefix"`
	// MeshCADir is a `petrel cert ca` directory (ca.pem, ca-key.pem) whose
	// CA signs the nodes' certificates. Required.
	MeshCADir string `yaml:"mesh_ca_dir"`
	// GossipKeyFile is the gossip keyring handed to nodes: one base64 AES
	// key per line, '#' comments. Optional.
	GossipKeyFile string `yaml:"gossip_key_file"`
	// Join lists gossip seeds (host:port). Optional.
	Join StringList `yaml:"join"`
	// Fallback lists central-tier base URLs (http or https). Optional.
	Fallback StringList `yaml:"fallback"`
	// CertValidity is the lifetime of issued certificates (a Go duration,
	// 1h to 5 years, cut at the CA's expiry). Default 720h.
	CertValidity string `yaml:"cert_validity"`
}

// ParseEnrolConfig decodes an enrolment config strictly: unknown keys,
// duplicate keys and values of the wrong type are errors that name the
// line. It does not validate the values; see [EnrolConfig.Validate].
func ParseEnrolConfig(b []byte) (*EnrolConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c EnrolConfig
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = strings.Replace(m, " in type coordinator.EnrolConfig", "", 1)
			}
			return nil, errors.New(strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the file holds more than one YAML document")
	}
	return &c, nil
}

// Validate checks the values that need no file: URLs, seeds, the
// validity and that required keys are set.
func (c *EnrolConfig) Validate() error {
	if len(c.NATSURL) == 0 {
		return errors.New("nats_url is required")
	}
	if len(c.NATSURL) > maxEnrolList {
		return fmt.Errorf("nats_url: %d URLs, at most %d", len(c.NATSURL), maxEnrolList)
	}
	for _, s := range c.NATSURL {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.Opaque != "" {
			return fmt.Errorf("nats_url %q: want nats://host:port", s)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("nats_url %q: scheme %q, want nats, tls, ws or wss", s, u.Scheme)
		}
		if u.User != nil {
			return fmt.Errorf("nats_url %q: give credentials with nats_user and nats_password_file, not in the URL", s)
		}
	}
	if (c.NATSUser == "") != (c.NATSPasswordFile == "") {
		return errors.New("nats_user and nats_password_file go together: give both or neither")
	}
	if c.NATSUser != "" && (len(c.NATSUser) > 128 || strings.ContainsFunc(c.NATSUser, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		return fmt.Errorf("nats_user %q: want at most 128 characters without spaces or control characters", c.NATSUser)
	}
	if err := (bus.Names{Prefix: c.NATSPrefix}).Validate(); err != nil {
		return fmt.Errorf("nats_prefix: %v", err)
	}
	if c.MeshCADir == "" {
		return errors.New("mesh_ca_dir is required (a `petrel cert ca` directory)")
	}
	if len(c.Join) > maxEnrolList {
		return fmt.Errorf("join: %d seeds, at most %d", len(c.Join), maxEnrolList)
	}
	for _, s := range c.Join {
		host, port, err := net.SplitHostPort(s)
		p, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			return fmt.Errorf("join %q: want host:port", s)
		}
	}
	if len(c.Fallback) > maxEnrolList {
		return fmt.Errorf("fallback: %d URLs, at most %d", len(c.Fallback), maxEnrolList)
	}
	for _, s := range c.Fallback {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("fallback %q: want an http(s)://host[:port] base URL", s)
		}
	}
	if _, err := c.validity(); err != nil {
		return err
	}
	return nil
}

// validity parses CertValidity.
func (c *EnrolConfig) validity() (time.Duration, error) {
	if c.CertValidity == "" {
		return DefaultCertValidity, nil
	}
	d, err := time.ParseDuration(c.CertValidity)
	if err != nil {
		return 0, fmt.Errorf("cert_validity %q: want a duration such as 720h", c.CertValidity)
	}
	if d < minCertValidity || d > maxCertValidity {
		return 0, fmt.Errorf("cert_validity %s: want between %v and %v", c.CertValidity, minCertValidity, maxCertValidity)
	}
	return d, nil
}

// LoadEnrolConfig reads, decodes and validates an enrolment config file,
// and makes its paths absolute (relative to the file's directory). It does
// not read the files the config names; New does, and fails when any is
// missing or wrong.
func LoadEnrolConfig(path string) (*EnrolConfig, error) {
	b, err := readLimited(path, maxEnrolConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("enrol config: %w", err)
	}
	c, err := ParseEnrolConfig(b)
	if err != nil {
		return nil, fmt.Errorf("enrol config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("enrol config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.NATSPasswordFile, &c.MeshCADir, &c.GossipKeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	return c, nil
}

// enrolment is a loaded enrolment config: what every enrolled node gets,
// with the files read and checked.
type enrolment struct {
	natsURLs     []string
	natsUser     string
	natsPassword string
	prefix       string
	ca           *meshtls.CA
	caPEM        string
	gossipKeys   []string
	join         []string
	fallback     []string
	validity     time.Duration
}

// loadEnrolment loads the config at path and the files it names: the NATS
// password, the mesh CA and the gossip keyring. names is the coordinator's
// naming; the config's prefix must agree with it.
func loadEnrolment(path string, names bus.Names) (*enrolment, error) {
	c, err := LoadEnrolConfig(path)
	if err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) (*enrolment, error) {
		return nil, fmt.Errorf("enrol config %s: "+format, append([]any{path}, a...)...)
	}
	e := &enrolment{natsURLs: c.NATSURL, natsUser: c.NATSUser, prefix: c.NATSPrefix, join: c.Join, fallback: c.Fallback}
	e.validity, _ = c.validity() // checked by Validate
	own := names.Prefix
	if own == "" {
		own = bus.DefaultPrefix
	}
	switch {
	case e.prefix == "":
		e.prefix = names.Prefix
	case e.prefix != own:
		return fail("nats_prefix %q differs from the coordinator's prefix %q: enrolled nodes would not see this coordinator", e.prefix, own)
	}
	if c.NATSPasswordFile != "" {
		b, err := readPrivate(c.NATSPasswordFile)
		if err != nil {
			return fail("nats_password_file: %v", err)
		}
		if e.natsPassword = strings.TrimSpace(string(b)); e.natsPassword == "" {
			return fail("nats_password_file %s is empty", c.NATSPasswordFile)
		}
	}
	if e.ca, err = meshtls.LoadCA(c.MeshCADir); err != nil {
		return fail("mesh_ca_dir: %v", err)
	}
	e.caPEM = string(e.ca.CertificatePEM())
	if c.GossipKeyFile != "" {
		b, err := readPrivate(c.GossipKeyFile)
		if err != nil {
			return fail("gossip_key_file: %v", err)
		}
		if e.gossipKeys, err = parseKeyring(b); err != nil {
			return fail("gossip_key_file %s: %v", c.GossipKeyFile, err)
		}
	}
	return e, nil
}

// readLimited reads a regular file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// readPrivate reads a secret file that group and others may not read.
func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	return readLimited(path, maxSecretFileBytes)
}

// parseKeyring reads gossip keys: one base64 AES key (16, 24 or 32 bytes)
// per line, blank lines and '#' comments skipped. The keys are returned in
// standard base64, in order (the first one encrypts).
func parseKeyring(b []byte) ([]string, error) {
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %v", line, err)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("line %d: %d-byte key, want 16, 24 or 32", line, n)
		}
		keys = append(keys, base64.StdEncoding.EncodeToString(k))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// EnrolRequest is the body of POST /v1/enrol.
type EnrolRequest struct {
	// ID is the node's ID (meshtls.ValidateNodeID).
	ID string `json:"id"`
	// Region and Labels describe the node (recorded in the audit trail).
	Region string            `json:"region,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// CSR is the node's PEM certificate signing request; only its public
	// key is used.
	CSR string `json:"csr"`
	// Hosts are the DNS names and IP addresses the certificate names.
	Hosts []string `json:"hosts,omitempty"`
}

// EnrolResponse is the answer to POST /v1/enrol: what the node needs to
// join the mesh and the coordinator.
type EnrolResponse struct {
	ID           string   `json:"id"`
	NATSURLs     []string `json:"nats_urls"`
	NATSUser     string   `json:"nats_user,omitempty"`
	NATSPassword string   `json:"nats_password,omitempty"`
	NATSPrefix   string   `json:"nats_prefix,omitempty"`
	// CoordinatorKey is the PEM ed25519 public key that signs manifests,
	// as GET /v1/signing-key serves it.
	CoordinatorKey string `json:"coordinator_key"`
	// MeshCA and MeshCert are PEM: the mesh CA certificate and the node's
	// new certificate.
	MeshCA   string `json:"mesh_ca"`
	MeshCert string `json:"mesh_cert"`
	// GossipKeys is the gossip keyring, standard base64, first key first.
	GossipKeys []string `json:"gossip_keys,omitempty"`
	Join       []string `json:"join,omitempty"`
	Fallback   []string `json:"fallback,omitempty"`
}

// Enrol issues a mesh certificate for the node in req and returns what it
// needs to join. actor (the token's name) is recorded in the audit trail
// with the node's ID; the certificate is handed out only once that record
// is written. Errors are *Error with the status the API answers with.
func (c *Coordinator) Enrol(ctx context.Context, req EnrolRequest, actor string) (*EnrolResponse, error) {
	e := c.enrol
	if e == nil {
		return nil, notFound("enrolment is not configured on this coordinator (start it with --enrol-config FILE)")
	}
	res, fields, err := e.issue(req)
	if err != nil {
		ev := bus.AuditEvent{Kind: "node.enrol", Actor: actor, OK: false, Detail: truncate(err.Error(), 1024)}
		if meshtls.ValidateNodeID(req.ID) == nil {
			ev.Fields = map[string]string{"node": req.ID}
		}
		c.audit(ctx, ev)
		return nil, err
	}
	pub, err := models.MarshalPublicKey(c.signer.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("encode the signing key: %w", err)
	}
	res.CoordinatorKey = string(pub)
	if err := c.audit(ctx, bus.AuditEvent{Kind: "node.enrol", Actor: actor, OK: true,
		Detail: fmt.Sprintf("node %s enrolled", req.ID), Fields: fields}); err != nil {
		return nil, errf(http.StatusServiceUnavailable, "enrolment of %s not recorded in the audit trail, certificate withheld: %v", req.ID, err)
	}
	c.log.Info("node enrolled", "node", req.ID, "region", req.Region, "actor", actor, "serial", fields["serial"])
	return res, nil
}

// issue validates req and signs its certificate; fields describe the
// enrolment for the audit trail.
func (e *enrolment) issue(req EnrolRequest) (*EnrolResponse, map[string]string, error) {
	if err := meshtls.ValidateNodeID(req.ID); err != nil {
		return nil, nil, badRequest("id: %v", strings.TrimPrefix(err.Error(), "meshtls: "))
	}
	if req.Region != "" && !enrolRegionRE.MatchString(req.Region) {
		return nil, nil, badRequest("region %q: want 1-128 letters, digits, '_', '.', '-'", req.Region)
	}
	if len(req.Labels) > bus.MaxLabels {
		return nil, nil, badRequest("%d labels, at most %d", len(req.Labels), bus.MaxLabels)
	}
	for k, v := range req.Labels {
		if !enrolLabelKeyRE.MatchString(k) {
			return nil, nil, badRequest("label key %q: want 1-63 letters, digits, '_', '.', '/', '-'", k)
		}
		if len(v) > maxLabelValue {
			return nil, nil, badRequest("label %q: value longer than %d bytes", k, maxLabelValue)
		}
	}
	if strings.TrimSpace(req.CSR) == "" {
		return nil, nil, badRequest("csr: a PEM certificate signing request is required")
	}
	certPEM, err := e.ca.SignNodeCSR([]byte(req.CSR), req.ID, req.Hosts, e.validity)
	if err != nil {
		if meshtls.IsCSRError(err) {
			return nil, nil, badRequest("%s", strings.TrimPrefix(err.Error(), "meshtls: "))
		}
		return nil, nil, fmt.Errorf("issue a certificate for %s: %w", req.ID, err)
	}
	fields := map[string]string{"node": req.ID}
	if req.Region != "" {
		fields["region"] = req.Region
	}
	if len(req.Hosts) > 0 {
		fields["hosts"] = truncate(strings.Join(req.Hosts, ","), 1024)
	}
	if block, _ := pem.Decode(certPEM); block != nil {
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			fields["serial"] = hex.EncodeToString(cert.SerialNumber.Bytes())
			fields["not_after"] = cert.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	return &EnrolResponse{
		ID: req.ID, NATSURLs: e.natsURLs, NATSUser: e.natsUser, NATSPassword: e.natsPassword, NATSPrefix: e.prefix,
		MeshCA: e.caPEM, MeshCert: string(certPEM), GossipKeys: e.gossipKeys, Join: e.join, Fallback: e.fallback,
	}, fields, nil
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// handleEnrol is POST /v1/enrol: a JSON EnrolRequest, decoded strictly.
func (c *Coordinator) handleEnrol(w http.ResponseWriter, r *http.Request, tok *Token) {
	if c.enrol == nil {
		writeErr(w, notFound("enrolment is not configured on this coordinator (start it with --enrol-config FILE)"))
		return
	}
	var req EnrolRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, errf(http.StatusRequestEntityTooLarge, "enrol request exceeds %d bytes", maxEnrolBody))
			return
		}
		writeErr(w, badRequest("request body: %v", err))
		return
	}
	res, err := c.Enrol(r.Context(), req, tok.Name)
	if err != nil {
		writeErr(w, err)
		return
	}
	// The answer carries secrets (the NATS password, gossip keys).
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, res)
}
