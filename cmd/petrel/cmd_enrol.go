package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/internal/atomicfile"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"go.yaml.in/yaml/v3"
)

// Enrolment of an edge node (docs/enrol.md): `petrel enrol` generates the
// node's mesh key, has the coordinator sign a certificate for it with a
// join token, and writes the credentials and a `petrel node --config`
// file. The private key never leaves the machine.

const usageEnrol = "petrel enrol --coordinator URL --token-file FILE --id ID [--region R] [--labels k=v,...] [--hosts h1,h2] [--dir /var/lib/petrel] [--config /etc/petrel/node.yaml] [--ca-file PEM]"

// Files `petrel enrol` writes under --dir.
const (
	enrolKeyFile      = "mesh/key.pem"
	enrolCertFile     = "mesh/cert.pem"
	enrolCAFile       = "mesh/ca.pem"
	enrolCoordKey     = "coordinator.pub"
	enrolPasswordFile = "nats.password"
	enrolGossipFile   = "gossip.keys"
)

// enrolTimeout bounds the enrolment request.
const enrolTimeout = 30 * time.Second

// errEnrolRefused marks failures that exit 2: the caller's input or the
// coordinator's refusal.
var errEnrolRefused = errors.New("enrolment refused")

func runEnrol(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel enrol", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: %s\n\n", usageEnrol)
		fs.PrintDefaults()
	}
	coord := fs.String("coordinator", strings.TrimSpace(e.getenv("PETREL_COORDINATOR")), "the coordinator's management API base URL (env PETREL_COORDINATOR)")
	tokenFile := fs.String("token-file", "", "file holding a join token (required)")
	id := fs.String("id", "", "this node's ID (required): 1-64 letters, digits, '.', '_', '-'")
	region := fs.String("region", "", "this node's region")
	labels := fs.String("labels", "", "node labels k=v,k=v for model placement")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IP addresses the mesh certificate names (the addresses peers dial)")
	dir := fs.String("dir", "/var/lib/petrel", "directory for the key, certificates and secrets")
	config := fs.String("config", "/etc/petrel/node.yaml", "node configuration file to write or update (petrel node --config)")
	caFile := fs.String("ca-file", "", "PEM CA bundle to verify the coordinator's HTTPS certificate (default: system roots)")
	timeout := fs.Duration("timeout", enrolTimeout, "how long to wait for the coordinator")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(e.stderr, "petrel enrol: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected arguments %q\nusage: %s", fs.Args(), usageEnrol)
	}
	o := enrolOptions{region: *region, dir: *dir, config: *config, caFile: *caFile, timeout: *timeout, hosts: splitList(*hosts)}
	if err := o.check(*coord, *tokenFile, *id, *labels); err != nil {
		return fail(2, "%v", err)
	}
	if o.base.Scheme == "http" && !isLoopback(o.base.Hostname()) {
		fmt.Fprintf(e.stderr, "petrel enrol: warning: %s is plain HTTP; the join token and the node's secrets cross the network unencrypted\n", o.base)
	}
	written, err := o.enrol(ctx)
	if err != nil {
		if errors.Is(err, errEnrolRefused) {
			return fail(2, "%v", err)
		}
		return fail(1, "%v", err)
	}
	for _, p := range written {
		fmt.Fprintf(e.stdout, "wrote %s\n", p)
	}
	fmt.Fprintf(e.stdout, "node %q enrolled; start it with: petrel node --config %s\n", o.id, o.config)
	if hint := enrolHint(o.config); hint != "" {
		fmt.Fprintln(e.stdout, hint)
	}
	return 0
}

// enrolHint names what the written configuration still needs: the gossip
// options (join, gossip-key-file, fallback) need gossip-bind, which only
// the operator knows.
func enrolHint(config string) string {
	b, err := os.ReadFile(config)
	if err != nil {
		return ""
	}
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil {
		return ""
	}
	if _, ok := m["gossip-bind"]; ok {
		return ""
	}
	for _, k := range []string{"join", "gossip-key-file", "fallback"} {
		if _, ok := m[k]; ok {
			return fmt.Sprintf("note: %s sets %s, which need gossip-bind: add \"gossip-bind: HOST:PORT\" (this node's gossip address) to it", config, k)
		}
	}
	return ""
}

// enrolOptions are `petrel enrol`'s checked flags.
type enrolOptions struct {
	base        *url.URL
	token       string
	id, region  string
	labels      map[string]string
	hosts       []string
	dir, config string
	caFile      string
	timeout     time.Duration
}

// check validates the flags and reads the token; its errors wrap
// errEnrolRefused.
func (o *enrolOptions) check(coord, tokenFile, id, labels string) error {
	refuse := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", errEnrolRefused, fmt.Sprintf(format, a...))
	}
	if coord == "" {
		return refuse("--coordinator is required (or PETREL_COORDINATOR)\nusage: %s", usageEnrol)
	}
	base, err := parseCoordinatorURL(coord)
	if err != nil {
		return refuse("%s", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	o.base = base
	if tokenFile == "" {
		return refuse("--token-file is required (a file holding a join token)\nusage: %s", usageEnrol)
	}
	if o.token, err = readTokenFile(tokenFile); err != nil {
		return refuse("%v", err)
	}
	if strings.ContainsFunc(o.token, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return refuse("token file %s: the token contains spaces or control characters", tokenFile)
	}
	if err := meshtls.ValidateNodeID(id); err != nil {
		return refuse("--id: %s", strings.TrimPrefix(err.Error(), "meshtls: "))
	}
	o.id = id
	if o.labels, err = coordinator.ParseLabels(labels); err != nil {
		return refuse("--labels: %v", err)
	}
	for k, v := range o.labels {
		if strings.Contains(k, "=") || strings.Contains(v, ",") {
			return refuse("--labels: %s=%s: keys may not contain '=', values not ','", k, v)
		}
	}
	if o.dir == "" || o.config == "" {
		return refuse("--dir and --config must not be empty")
	}
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return refuse("--dir: %v", err)
	}
	if o.config, err = filepath.Abs(o.config); err != nil {
		return refuse("--config: %v", err)
	}
	if o.caFile != "" && base.Scheme != "https" {
		return refuse("--ca-file verifies an https:// coordinator; %s is not one", base)
	}
	if o.timeout <= 0 {
		return refuse("--timeout %v: must be positive", o.timeout)
	}
	return nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// enrol runs the enrolment and returns the files it wrote.
func (o *enrolOptions) enrol(ctx context.Context) ([]string, error) {
	hc := &http.Client{}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --ca-file: %v", errEnrolRefused, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%w: --ca-file %s holds no PEM certificate", errEnrolRefused, o.caFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	keyPEM, csrPEM, err := meshtls.NewNodeCSR(o.id)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	client := &mgmtClient{base: o.base, token: o.token, timeout: o.timeout, hc: hc}
	req := coordinator.EnrolRequest{ID: o.id, Region: o.region, Labels: o.labels, CSR: string(csrPEM), Hosts: o.hosts}
	var res coordinator.EnrolResponse
	if _, err := client.sendJSON(ctx, http.MethodPost, "/v1/enrol", req, &res); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, fmt.Errorf("%w: the coordinator answered %v", errEnrolRefused, ae)
		}
		return nil, err
	}
	if err := checkEnrolAnswer(&res, o.id, key.Public()); err != nil {
		return nil, fmt.Errorf("the coordinator's answer is unusable: %w", err)
	}
	return o.write(&res, keyPEM)
}

// parseKey decodes the PKCS #8 key NewNodeCSR returns.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("encode the node key: no PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse the node key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("node key of type %T cannot sign", k)
	}
	return s, nil
}

// checkEnrolAnswer verifies what the coordinator sent before anything is
// written: the certificate is for this node and this key and chains to the
// mesh CA, the coordinator key parses, the gossip keys are AES keys.
func checkEnrolAnswer(res *coordinator.EnrolResponse, id string, pub crypto.PublicKey) error {
	if res.ID != id {
		return fmt.Errorf("it is for node %q, not %q", res.ID, id)
	}
	if len(res.NATSURLs) == 0 {
		return errors.New("it has no NATS URL")
	}
	for _, u := range res.NATSURLs {
		if u == "" || strings.ContainsAny(u, ", \t\n") {
			return fmt.Errorf("NATS URL %q is empty or holds a comma or space", u)
		}
	}
	if _, err := models.ParsePublicKey([]byte(res.CoordinatorKey)); err != nil {
		return fmt.Errorf("coordinator_key: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(res.MeshCA)) {
		return errors.New("mesh_ca holds no PEM certificate")
	}
	block, rest := pem.Decode([]byte(res.MeshCert))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("mesh_cert is not one PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("mesh_cert: %v", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if eq, ok := cert.PublicKey.(equaler); !ok || !eq.Equal(pub) {
		return errors.New("mesh_cert does not hold this node's public key")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("mesh_cert does not verify against mesh_ca: %v", err)
		}
	}
	if !slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == "petrel://node/"+id }) {
		return fmt.Errorf("mesh_cert does not name petrel://node/%s", id)
	}
	for i, k := range res.GossipKeys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			return fmt.Errorf("gossip key %d is not a base64 AES key of 16, 24 or 32 bytes", i+1)
		}
	}
	for _, l := range [][]string{res.Join, res.Fallback} {
		for _, s := range l {
			if s == "" || strings.ContainsAny(s, ", \t\n") {
				return fmt.Errorf("join or fallback entry %q is empty or holds a comma or space", s)
			}
		}
	}
	return nil
}

// write stores the credentials under o.dir and writes or updates the node
// configuration, each file atomically; it returns the paths written.
func (o *enrolOptions) write(res *coordinator.EnrolResponse, keyPEM []byte) ([]string, error) {
	path := func(rel string) string { return filepath.Join(o.dir, filepath.FromSlash(rel)) }
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.dir, "mesh"), 0o700); err != nil {
		return nil, err
	}
	type file struct {
		rel  string
		data string
		mode os.FileMode
	}
	files := []file{
		// The key goes first: a failure after it leaves the old
		// certificate with a new key, which the node reports clearly and
		// a second enrolment repairs.
		{enrolKeyFile, string(keyPEM), 0o600},
		{enrolCertFile, res.MeshCert, 0o644},
		{enrolCAFile, res.MeshCA, 0o644},
		{enrolCoordKey, res.CoordinatorKey, 0o644},
	}
	if res.NATSPassword != "" {
		files = append(files, file{enrolPasswordFile, res.NATSPassword + "\n", 0o600})
	}
	if len(res.GossipKeys) > 0 {
		files = append(files, file{enrolGossipFile, "# gossip keyring from the coordinator; the first key encrypts\n" + strings.Join(res.GossipKeys, "\n") + "\n", 0o600})
	}
	var written []string
	for _, f := range files {
		if err := atomicfile.WriteFile(path(f.rel), []byte(f.data), f.mode); err != nil {
			return written, err
		}
		written = append(written, path(f.rel))
	}

	set := []configEntry{
		{"id", scalarNode(o.id)},
	}
	if o.region != "" {
		set = append(set, configEntry{"region", scalarNode(o.region)})
	}
	if len(o.labels) > 0 {
		set = append(set, configEntry{"labels", mappingNode(o.labels)})
	}
	set = append(set,
		configEntry{"nats-url", scalarNode(strings.Join(res.NATSURLs, ","))},
		configEntry{"coordinator-key", scalarNode(path(enrolCoordKey))},
		configEntry{"mesh-ca", scalarNode(path(enrolCAFile))},
		configEntry{"mesh-cert", scalarNode(path(enrolCertFile))},
		configEntry{"mesh-key", scalarNode(path(enrolKeyFile))},
	)
	if res.NATSUser != "" {
		set = append(set, configEntry{"nats-user", scalarNode(res.NATSUser)})
	}
	if res.NATSPassword != "" {
		set = append(set, configEntry{"nats-password-file", scalarNode(path(enrolPasswordFile))})
	}
	if res.NATSPrefix != "" {
		set = append(set, configEntry{"nats-prefix", scalarNode(res.NATSPrefix)})
	}
	if len(res.GossipKeys) > 0 {
		set = append(set, configEntry{"gossip-key-file", scalarNode(path(enrolGossipFile))})
	}
	if len(res.Join) > 0 {
		set = append(set, configEntry{"join", sequenceNode(res.Join)})
	}
	if len(res.Fallback) > 0 {
		set = append(set, configEntry{"fallback", sequenceNode(res.Fallback)})
	}
	old, err := os.ReadFile(o.config)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return written, fmt.Errorf("node config: %w", err)
	}
	merged, err := mergeNodeConfig(old, set)
	if err != nil {
		return written, fmt.Errorf("node config %s: %w", o.config, err)
	}
	if err := os.MkdirAll(filepath.Dir(o.config), 0o755); err != nil {
		return written, err
	}
	if err := atomicfile.WriteFile(o.config, merged, 0o640); err != nil {
		return written, err
	}
	return append(written, o.config), nil
}

// configEntry is one key enrolment sets in the node configuration.
type configEntry struct {
	key   string
	value *yaml.Node
}

func scalarNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func sequenceNode(items []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, s := range items {
		n.Content = append(n.Content, scalarNode(s))
	}
	return n
}

func mappingNode(m map[string]string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.Content = append(n.Content, scalarNode(k), scalarNode(m[k]))
	}
	return n
}

// mergeNodeConfig sets the entries in the YAML mapping old (empty for a
// new file) and returns the new file. Keys enrolment does not set are kept
// with their comments; a set key keeps its place and its comments, a new
// one is appended. A key that appears more than once keeps only its first
// occurrence.
func mergeNodeConfig(old []byte, set []configEntry) ([]byte, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(old))
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		doc = yaml.Node{}
		if c := strings.TrimSpace(string(old)); c != "" {
			// Only comments: keep them at the top.
			doc = yaml.Node{Kind: yaml.DocumentNode, HeadComment: c, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
		}
	case err != nil:
		return nil, fmt.Errorf("not valid YAML, left untouched: %v", err)
	default:
		var extra yaml.Node
		if dec.Decode(&extra) == nil {
			return nil, errors.New("holds more than one YAML document, left untouched")
		}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, HeadComment: "petrel node configuration: keys are `petrel node` flag names (petrel node --config FILE)"}
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		// An explicit empty document ("---" or "~"): start a mapping.
		doc.Content[0] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: root.HeadComment}
		root = doc.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of flag names to values, left untouched", root.Line)
	}
	for _, e := range set {
		found := false
		for i := 0; i+1 < len(root.Content); {
			k := root.Content[i]
			if k.Kind != yaml.ScalarNode || k.Value != e.key {
				i += 2
				continue
			}
			if found {
				root.Content = slices.Delete(root.Content, i, i+2)
				continue
			}
			found = true
			prev, v := root.Content[i+1], *e.value
			v.HeadComment, v.LineComment, v.FootComment = prev.HeadComment, prev.LineComment, prev.FootComment
			root.Content[i+1] = &v
			i += 2
		}
		if !found {
			v := *e.value
			root.Content = append(root.Content, scalarNode(e.key), &v)
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode: %v", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode: %v", err)
	}
	return buf.Bytes(), nil
}
