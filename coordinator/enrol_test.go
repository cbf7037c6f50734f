package coordinator_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/node/meshtls"
)

const joinToken = "join-secret-0123456789"

// enrolFiles writes an enrolment config with everything it names into a
// new directory and returns the config's path and the CA.
func enrolFiles(t *testing.T, extra string) (string, *meshtls.CA) {
	t.Helper()
	dir := t.TempDir()
	ca, err := meshtls.NewDevCA(filepath.Join(dir, "mesh-ca"), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("nats.password", "node-password\n", 0o600)
	write("gossip.keys", "# current key first\n"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n", 0o600)
	cfg := `# what enrolled nodes get
nats_url: [nats://coordinator.example:4222, "nats://coordinator-2.example:4222"]
nats_user: node
nats_password_file: nats.password      # relative to this file
mesh_ca_dir: ` + filepath.Join(dir, "mesh-ca") + `
gossip_key_file: gossip.keys
join: ["central-0.example:7946"]
fallback: ["https://central.example:8443"]
cert_validity: 48h
` + extra
	write("enrol.yaml", cfg, 0o644)
	return filepath.Join(dir, "enrol.yaml"), ca
}

func enrolTokens(t testing.TB) *coordinator.Tokens {
	toks, err := coordinator.NewTokens([]coordinator.Token{
		{Name: "alice", Secret: adminToken, Scopes: []string{"admin"}},
		{Name: "ci", Secret: pushToken, Scopes: []string{"push"}},
		{Name: "viewer", Secret: readToken, Scopes: []string{"read"}},
		{Name: "edge-join", Secret: joinToken, Scopes: []string{"join"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestEnrolConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty"},
		{"unknown key", "nats_url: nats://a:4222\nmesh_ca_dir: /x\nnats_pasword_file: p\n", "line 3: field nats_pasword_file not found"},
		{"duplicate key", "nats_url: nats://a:4222\nnats_url: nats://b:4222\n", "already defined"},
		{"wrong type", "nats_url:\n  a: b\n", "line 2: want a string or a list of strings"},
		{"two documents", "nats_url: nats://a:4222\nmesh_ca_dir: /x\n---\nnats_url: nats://b:4222\n", "more than one YAML document"},
		{"no nats_url", "mesh_ca_dir: /x\n", "nats_url is required"},
		{"bad scheme", "nats_url: http://a:4222\nmesh_ca_dir: /x\n", "scheme \"http\""},
		{"credentials in URL", "nats_url: nats://u:p@a:4222\nmesh_ca_dir: /x\n", "not in the URL"},
		{"user alone", "nats_url: nats://a:4222\nnats_user: node\nmesh_ca_dir: /x\n", "give both or neither"},
		{"bad prefix", "nats_url: nats://a:4222\nnats_prefix: 'a b'\nmesh_ca_dir: /x\n", "nats_prefix"},
		{"no CA", "nats_url: nats://a:4222\n", "mesh_ca_dir is required"},
		{"bad join", "nats_url: nats://a:4222\nmesh_ca_dir: /x\njoin: [central-0]\n", "join \"central-0\""},
		{"bad fallback", "nats_url: nats://a:4222\nmesh_ca_dir: /x\nfallback: [ftp://c]\n", "fallback \"ftp://c\""},
		{"bad validity", "nats_url: nats://a:4222\nmesh_ca_dir: /x\ncert_validity: forever\n", "cert_validity \"forever\""},
		{"short validity", "nats_url: nats://a:4222\nmesh_ca_dir: /x\ncert_validity: 5m\n", "want between"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "enrol.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := coordinator.LoadEnrolConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// A comma-separated string is a list too.
	c, err := coordinator.ParseEnrolConfig([]byte("nats_url: nats://a:4222, nats://b:4222\nmesh_ca_dir: /x\n"))
	if err != nil || !slices.Equal(c.NATSURL, []string{"nats://a:4222", "nats://b:4222"}) || c.Validate() != nil {
		t.Fatalf("comma list: %+v %v", c, err)
	}
}

// New checks the files the config names, with errors that say which.
func TestEnrolConfigFilesCheckedAtNew(t *testing.T) {
	newWith := func(path string, prefix string) error {
		_, err := coordinator.New(coordinator.Config{DataDir: t.TempDir(), Tokens: enrolTokens(t), EnrolConfigFile: path, Prefix: prefix, Logger: testLogger(t)})
		return err
	}
	path, _ := enrolFiles(t, "")
	if err := newWith(path, ""); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the config path
		want  string
	}{
		{"missing config", func(t *testing.T, dir string) string { return filepath.Join(dir, "absent.yaml") }, "absent.yaml"},
		{"open password file", func(t *testing.T, dir string) string {
			os.Chmod(filepath.Join(dir, "nats.password"), 0o644)
			return filepath.Join(dir, "enrol.yaml")
		}, "chmod 600"},
		{"empty password", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "nats.password"), []byte(" \n"), 0o600)
			return filepath.Join(dir, "enrol.yaml")
		}, "is empty"},
		{"bad gossip key", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "gossip.keys"), []byte("c2hvcnQ=\n"), 0o600)
			return filepath.Join(dir, "enrol.yaml")
		}, "gossip_key_file"},
		{"no CA", func(t *testing.T, dir string) string {
			os.Remove(filepath.Join(dir, "mesh-ca", meshtls.CAKeyFile))
			return filepath.Join(dir, "enrol.yaml")
		}, "mesh_ca_dir"},
	}
	for _, c := range cases {
		path, _ := enrolFiles(t, "")
		if err := newWith(c.setup(t, filepath.Dir(path)), ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// The prefix must agree with the coordinator's.
	path, _ = enrolFiles(t, "nats_prefix: other\n")
	if err := newWith(path, ""); err == nil || !strings.Contains(err.Error(), "differs from the coordinator's prefix") {
		t.Errorf("prefix mismatch: %v", err)
	}
	if err := newWith(path, "other"); err != nil {
		t.Errorf("matching prefix: %v", err)
	}
}

func enrolRequest(t *testing.T, id string) (coordinator.EnrolRequest, []byte) {
	t.Helper()
	keyPEM, csrPEM, err := meshtls.NewNodeCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	return coordinator.EnrolRequest{ID: id, Region: "eu-west", Labels: map[string]string{"tier": "store"}, CSR: string(csrPEM),
		Hosts: []string{"store-042.example", "10.1.2.3"}}, keyPEM
}

func TestEnrol(t *testing.T) {
	path, ca := enrolFiles(t, "")
	m := newTestMesh(t, meshOpts{mutate: func(c *coordinator.Config) {
		c.Tokens = enrolTokens(t)
		c.EnrolConfigFile = path
	}})
	req, keyPEM := enrolRequest(t, "store-042")

	var res coordinator.EnrolResponse
	st, body := m.api("POST", "/v1/enrol", joinToken, req, &res)
	if st != 200 {
		t.Fatalf("enrol: %d %s", st, body)
	}
	if res.ID != "store-042" || !slices.Equal(res.NATSURLs, []string{"nats://coordinator.example:4222", "nats://coordinator-2.example:4222"}) ||
		res.NATSUser != "node" || res.NATSPassword != "node-password" || res.NATSPrefix != "" ||
		!slices.Equal(res.Join, []string{"central-0.example:7946"}) || !slices.Equal(res.Fallback, []string{"https://central.example:8443"}) ||
		!slices.Equal(res.GossipKeys, []string{base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))}) {
		t.Fatalf("answer: %+v", res)
	}
	// The coordinator key is the one GET /v1/signing-key serves.
	if st, key := m.api("GET", "/v1/signing-key", readToken, nil, nil); st != 200 || key != res.CoordinatorKey {
		t.Fatalf("coordinator key %q, signing-key endpoint %d %q", res.CoordinatorKey, st, key)
	}
	caFile, err := os.ReadFile(ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if res.MeshCA != string(caFile) {
		t.Fatalf("mesh_ca is not the CA certificate")
	}
	// The certificate chains to the CA, names the node and holds the
	// CSR's public key.
	block, _ := pem.Decode([]byte(res.MeshCert))
	if block == nil {
		t.Fatalf("mesh_cert is not PEM: %q", res.MeshCert)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(res.MeshCA))
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "store-042.example", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("certificate does not verify for %v: %v", usage, err)
		}
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "petrel://node/store-042" || len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "10.1.2.3" {
		t.Fatalf("SANs: %v %v", cert.URIs, cert.IPAddresses)
	}
	if d := time.Until(cert.NotAfter); d > 48*time.Hour+time.Minute || d < 47*time.Hour {
		t.Fatalf("lifetime %v, want cert_validity 48h", d)
	}
	kb, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.(*ecdsa.PrivateKey).Public()) {
		t.Fatal("the certificate does not hold the CSR's public key")
	}

	// The answer is not cached.
	b, _ := json.Marshal(req)
	hreq, _ := http.NewRequest("POST", m.url()+"/v1/enrol", bytes.NewReader(b))
	hreq.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin enrol: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}

	// The enrolment is in the audit trail, with the token's name.
	var evs []bus.AuditEvent
	if st, body := m.api("GET", "/v1/audit?kind=node.enrol&actor=edge-join", readToken, nil, &evs); st != 200 || len(evs) != 1 {
		t.Fatalf("audit: %d %s", st, body)
	}
	if ev := evs[0]; !ev.OK || ev.Fields["node"] != "store-042" || ev.Fields["region"] != "eu-west" || ev.Fields["serial"] == "" {
		t.Fatalf("audit event %+v", ev)
	}
}

func TestEnrolScopesAndBadRequests(t *testing.T) {
	path, _ := enrolFiles(t, "")
	m := newTestMesh(t, meshOpts{mutate: func(c *coordinator.Config) {
		c.Tokens = enrolTokens(t)
		c.EnrolConfigFile = path
	}})
	req, _ := enrolRequest(t, "edge-1")

	// A join token may enrol and nothing else; read and push tokens may
	// not enrol.
	if st, body := m.api("GET", "/v1/models", joinToken, nil, nil); st != 403 {
		t.Errorf("join token GET /v1/models: %d %s", st, body)
	}
	if st, body := m.api("GET", "/v1/nodes", joinToken, nil, nil); st != 403 {
		t.Errorf("join token GET /v1/nodes: %d %s", st, body)
	}
	for _, tok := range []string{readToken, pushToken} {
		if st, body := m.api("POST", "/v1/enrol", tok, req, nil); st != 403 || !strings.Contains(body, `\"join\" scope`) {
			t.Errorf("token %s enrol: %d %s", tok, st, body)
		}
	}
	if st, _ := m.api("POST", "/v1/enrol", "", req, nil); st != 401 {
		t.Errorf("no token: %d", st)
	}

	badID := req
	badID.ID = "../../etc"
	badCSR := req
	badCSR.CSR = strings.Replace(req.CSR, "CERTIFICATE REQUEST", "CERTIFICATE", 2)
	garbledCSR := req
	garbledCSR.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
	noCSR := req
	noCSR.CSR = ""
	badHost := req
	badHost.Hosts = []string{"under_score!"}
	badRegion := req
	badRegion.Region = "eu west"
	badLabel := req
	badLabel.Labels = map[string]string{"bad key": "v"}
	for _, c := range []struct {
		name string
		body any
		want string
	}{
		{"bad id", badID, "id:"},
		{"bad csr type", badCSR, "want CERTIFICATE REQUEST"},
		{"garbled csr", garbledCSR, "parse certificate request"},
		{"no csr", noCSR, "csr"},
		{"bad host", badHost, "host"},
		{"bad region", badRegion, "region"},
		{"bad label", badLabel, "label key"},
		{"unknown field", map[string]any{"id": "edge-1", "csr": req.CSR, "role": "central"}, "unknown field"},
	} {
		if st, body := m.api("POST", "/v1/enrol", joinToken, c.body, nil); st != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", c.name, st, body, c.want)
		}
	}
	raw := func(body []byte) (int, string) {
		hreq, _ := http.NewRequest("POST", m.url()+"/v1/enrol", bytes.NewReader(body))
		hreq.Header.Set("Authorization", "Bearer "+joinToken)
		return m.do(hreq, nil)
	}
	if st, body := raw([]byte(`{"id":"edge-1"} {"id":"edge-2"}`)); st != 400 || !strings.Contains(body, "trailing") {
		t.Errorf("trailing data: %d %s", st, body)
	}
	if st, body := raw([]byte(`{"id": "edge-1", "csr": "` + strings.Repeat("A", 100<<10) + `"}`)); st != 413 {
		t.Errorf("large body: %d %s", st, body)
	}
	// Failed enrolments are audited too.
	var evs []bus.AuditEvent
	m.api("GET", "/v1/audit?kind=node.enrol", readToken, nil, &evs)
	failed := 0
	for _, ev := range evs {
		if !ev.OK {
			failed++
		}
	}
	if failed < 7 {
		t.Errorf("%d failed enrolments audited, want at least 7: %+v", failed, evs)
	}
}

func TestEnrolNotConfigured(t *testing.T) {
	m := newTestMesh(t, meshOpts{mutate: func(c *coordinator.Config) { c.Tokens = enrolTokens(t) }})
	req, _ := enrolRequest(t, "edge-1")
	st, body := m.api("POST", "/v1/enrol", joinToken, req, nil)
	if st != 404 || !strings.Contains(body, "enrolment is not configured") {
		t.Fatalf("enrol without a config: %d %s", st, body)
	}
}
