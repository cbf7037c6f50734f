package bus

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func validDesired() Desired {
	return Desired{
		Model: "resnet",
		Versions: []DesiredVersion{
			{Version: "1", Digest: digestA, Weight: 90},
			{Version: "2", Digest: digestB, Weight: 10, Shadow: 5},
		},
		Placement: Placement{Regions: []string{"eu-west"}, Labels: map[string]string{"tier": "gpu"}, MinReplicasPerRegion: 2},
		UpdatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func validStatus() NodeStatus {
	return NodeStatus{
		Node: "edge-1.paris", Role: RoleEdge, Region: "eu-west", Lat: 48.85, Lon: 2.35, HasLoc: true,
		HTTPURL: "http://10.0.0.1:8000", Load: 3,
		Models: []ModelStatus{{Model: "resnet", Version: "1", State: StateReady}, {Model: "resnet", Version: "2", State: StateFailed, Reason: "golden mismatch"}},
		Sent:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func validStats() NodeStats {
	lat := make([]uint64, len(LatencyBounds)+1)
	lat[3] = 7
	return NodeStats{
		Node: "edge-1", Started: time.Unix(1000, 0).UTC(), Sent: time.Unix(2000, 0).UTC(),
		Versions: []VersionStats{
			{Model: "resnet", Version: "1", Requests: 10, Errors: 1, Latency: lat},
			{Model: "resnet", Version: "2", Requests: 3, Latency: lat, Shadow: &ShadowStats{Against: "1", Mirrored: 3, Failed: 1, Compared: 30, SumAbsDiff: 0.5, MaxAbsDiff: 0.1}},
		},
	}
}

func TestDesiredValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Desired)
		want string // substring of the error; "" means valid
	}{
		{"valid", func(*Desired) {}, ""},
		{"no versions serves nothing", func(d *Desired) { d.Versions = nil }, ""},
		{"all zero weights", func(d *Desired) { d.Versions[0].Weight, d.Versions[1].Weight = 0, 0 }, ""},
		{"sum within slack", func(d *Desired) { d.Versions[0].Weight = 90.005 }, ""},
		{"bad model", func(d *Desired) { d.Model = "a/b" }, "model"},
		{"empty model", func(d *Desired) { d.Model = "" }, "model"},
		{"dup version", func(d *Desired) { d.Versions[1].Version = "1" }, "twice"},
		{"bad version", func(d *Desired) { d.Versions[1].Version = ".." }, "version"},
		{"bad digest", func(d *Desired) { d.Versions[0].Digest = "sha256:ABC" }, "digest"},
		{"md5 digest", func(d *Desired) { d.Versions[0].Digest = "md5:" + strings.Repeat("a", 32) }, "digest"},
		{"empty digest", func(d *Desired) { d.Versions[0].Digest = "" }, "digest"},
		{"negative weight", func(d *Desired) { d.Versions[0].Weight = -1; d.Versions[1].Weight = 101 }, "weight"},
		{"NaN weight", func(d *Desired) { d.Versions[0].Weight = math.NaN() }, "weight"},
		{"sum 99", func(d *Desired) { d.Versions[0].Weight = 89 }, "add up"},
		{"sum 100.02", func(d *Desired) { d.Versions[0].Weight = 90.02 }, "add up"},
		{"shadow 101", func(d *Desired) { d.Versions[1].Shadow = 101 }, "shadow"},
		{"shadow Inf", func(d *Desired) { d.Versions[1].Shadow = math.Inf(1) }, "shadow"},
		{"bad region", func(d *Desired) { d.Placement.Regions = []string{""} }, "region"},
		{"bad label", func(d *Desired) { d.Placement.Labels = map[string]string{"a b": "x"} }, "label"},
		{"negative replicas", func(d *Desired) { d.Placement.MinReplicasPerRegion = -1 }, "replicas"},
		{"too many versions", func(d *Desired) {
			d.Versions = make([]DesiredVersion, MaxVersionsPerModel+1)
		}, "versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := validDesired()
			tt.mod(&d)
			checkValidation(t, d.Validate(), tt.want)
		})
	}
}

func checkValidation(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want an error about %q, got none", want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not wrap ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not mention %q", err, want)
	}
}

func TestNodeStatusValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*NodeStatus)
		want string
	}{
		{"valid", func(*NodeStatus) {}, ""},
		{"central, no url", func(s *NodeStatus) { s.Role = RoleCentral; s.HTTPURL = "" }, ""},
		{"poles", func(s *NodeStatus) { s.Lat, s.Lon = -90, 180 }, ""},
		{"128 char id", func(s *NodeStatus) { s.Node = strings.Repeat("a", 128) }, ""},
		{"empty id", func(s *NodeStatus) { s.Node = "" }, "node id"},
		{"129 char id", func(s *NodeStatus) { s.Node = strings.Repeat("a", 129) }, "node id"},
		{"id with space", func(s *NodeStatus) { s.Node = "a b" }, "node id"},
		{"id wildcard", func(s *NodeStatus) { s.Node = "*" }, "node id"},
		{"id double dot", func(s *NodeStatus) { s.Node = "a..b" }, "node id"},
		{"id trailing dot", func(s *NodeStatus) { s.Node = "a." }, "node id"},
		{"bad role", func(s *NodeStatus) { s.Role = "king" }, "role"},
		{"lat 91", func(s *NodeStatus) { s.Lat = 91 }, "latitude"},
		{"lat NaN", func(s *NodeStatus) { s.Lat = math.NaN() }, "latitude"},
		{"lon -181", func(s *NodeStatus) { s.Lon = -181 }, "longitude"},
		{"bad url scheme", func(s *NodeStatus) { s.HTTPURL = "ftp://x" }, "http url"},
		{"url no host", func(s *NodeStatus) { s.HTTPURL = "http://" }, "http url"},
		{"negative load", func(s *NodeStatus) { s.Load = -1 }, "load"},
		{"bad model state", func(s *NodeStatus) { s.Models[0].State = "ready" }, "state"},
		{"bad model name", func(s *NodeStatus) { s.Models[0].Model = "" }, "bad name"},
		{"too many models", func(s *NodeStatus) {
			s.Models = make([]ModelStatus, MaxModelsPerNode+1)
			for i := range s.Models {
				s.Models[i] = ModelStatus{Model: "m", Version: "1", State: StateReady}
			}
		}, "models"},
		{"max models", func(s *NodeStatus) {
			s.Models = make([]ModelStatus, MaxModelsPerNode)
			for i := range s.Models {
				s.Models[i] = ModelStatus{Model: "m", Version: "1", State: StateReady}
			}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validStatus()
			tt.mod(&s)
			checkValidation(t, s.Validate(), tt.want)
		})
	}
}

func TestNodeStatsValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*NodeStats)
		want string
	}{
		{"valid", func(*NodeStats) {}, ""},
		{"no versions", func(s *NodeStats) { s.Versions = nil }, ""},
		{"bad node", func(s *NodeStats) { s.Node = "" }, "node id"},
		{"short latency", func(s *NodeStats) { s.Versions[0].Latency = s.Versions[0].Latency[1:] }, "latency buckets"},
		{"nil latency", func(s *NodeStats) { s.Versions[0].Latency = nil }, "latency buckets"},
		{"errors over requests", func(s *NodeStats) { s.Versions[0].Errors = 11 }, "errors out of"},
		{"bad version", func(s *NodeStats) { s.Versions[0].Version = "" }, "bad name"},
		{"shadow failures", func(s *NodeStats) { s.Versions[1].Shadow.Failed = 4 }, "shadow failures"},
		{"shadow against", func(s *NodeStats) { s.Versions[1].Shadow.Against = "" }, "against"},
		{"shadow negative diff", func(s *NodeStats) { s.Versions[1].Shadow.SumAbsDiff = -1 }, "difference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validStats()
			tt.mod(&s)
			checkValidation(t, s.Validate(), tt.want)
		})
	}
}

func TestSignedManifestValidate(t *testing.T) {
	ok := SignedManifest{Manifest: json.RawMessage(`{"name":"m"}`), Signature: make([]byte, 64), KeyID: "0123456789abcdef"}
	tests := []struct {
		name string
		mod  func(*SignedManifest)
		want string
	}{
		{"valid", func(*SignedManifest) {}, ""},
		{"empty manifest", func(m *SignedManifest) { m.Manifest = nil }, "empty manifest"},
		{"blank manifest", func(m *SignedManifest) { m.Manifest = json.RawMessage("  ") }, "empty manifest"},
		{"not json", func(m *SignedManifest) { m.Manifest = json.RawMessage("{") }, "JSON"},
		{"short signature", func(m *SignedManifest) { m.Signature = make([]byte, 63) }, "signature"},
		{"no signature", func(m *SignedManifest) { m.Signature = nil }, "signature"},
		{"bad key id", func(m *SignedManifest) { m.KeyID = "XYZ" }, "key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.mod(&m)
			checkValidation(t, m.Validate(), tt.want)
		})
	}
}

func TestAuditEventValidate(t *testing.T) {
	ok := AuditEvent{Time: time.Unix(1, 0), Kind: "rollout.start", Actor: "alice", Model: "m", OK: true}
	tests := []struct {
		name string
		mod  func(*AuditEvent)
		want string
	}{
		{"valid", func(*AuditEvent) {}, ""},
		{"single token", func(e *AuditEvent) { e.Kind = "push" }, ""},
		{"empty kind", func(e *AuditEvent) { e.Kind = "" }, "kind"},
		{"wildcard kind", func(e *AuditEvent) { e.Kind = "rollout.*" }, "kind"},
		{"tail wildcard", func(e *AuditEvent) { e.Kind = ">" }, "kind"},
		{"space", func(e *AuditEvent) { e.Kind = "a b" }, "kind"},
		{"empty token", func(e *AuditEvent) { e.Kind = "a..b" }, "kind"},
		{"trailing dot", func(e *AuditEvent) { e.Kind = "a." }, "kind"},
		{"no time", func(e *AuditEvent) { e.Time = time.Time{} }, "time"},
		{"long detail", func(e *AuditEvent) { e.Detail = strings.Repeat("x", maxText+1) }, "too long"},
		{"empty field key", func(e *AuditEvent) { e.Fields = map[string]string{"": "x"} }, "field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok
			tt.mod(&e)
			checkValidation(t, e.Validate(), tt.want)
		})
	}
}

func TestNamesValidate(t *testing.T) {
	for _, p := range []string{"", "petrel", "a_b-C9"} {
		if err := (Names{Prefix: p}).Validate(); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	for _, p := range []string{"a.b", "a b", "*", ">", strings.Repeat("a", 65)} {
		if err := (Names{Prefix: p}).Validate(); err == nil {
			t.Errorf("prefix %q: want an error", p)
		}
	}
	n := Names{}
	if got := n.AuditStream(); got != "PETREL_AUDIT" {
		t.Errorf("AuditStream() = %q", got)
	}
	if got := (Names{Prefix: "x-y"}).AuditStream(); got != "X_Y_AUDIT" {
		t.Errorf("AuditStream() = %q", got)
	}
}

func TestDecode(t *testing.T) {
	d := validDesired()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeDesired(b)
	if err != nil {
		t.Fatalf("DecodeDesired(valid): %v", err)
	}
	if got.Model != d.Model || len(got.Versions) != 2 || got.Versions[1].Shadow != 5 {
		t.Errorf("decoded %+v", got)
	}

	// Unknown fields are allowed (forward compatibility).
	withExtra := `{"model":"m","versions":[],"future_field":{"x":1}}`
	if _, err := DecodeDesired([]byte(withExtra)); err != nil {
		t.Errorf("unknown field: %v", err)
	}

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrInvalid},
		{"null", []byte("null"), ErrInvalid},
		{"not json", []byte("{"), ErrInvalid},
		{"trailing data", []byte(`{"model":"m"} x`), ErrInvalid},
		{"wrong type", []byte(`{"model":5}`), ErrInvalid},
		{"invalid content", []byte(`{"model":"a/b"}`), ErrInvalid},
		{"too large", append(append([]byte(`{"model":"m","rollout":"`), make([]byte, MaxMessageBytes)...), []byte(`"}`)...), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeDesired(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	st := validStatus()
	b, _ = json.Marshal(st)
	if _, err := DecodeNodeStatus(b); err != nil {
		t.Errorf("DecodeNodeStatus(valid): %v", err)
	}
	ss := validStats()
	b, _ = json.Marshal(ss)
	if _, err := DecodeNodeStats(b); err != nil {
		t.Errorf("DecodeNodeStats(valid): %v", err)
	}
	if _, err := DecodeNodeStats([]byte(`{"node":"n","versions":[{"model":"m","version":"1","latency":[1]}]}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("DecodeNodeStats(short latency) = %v, want ErrInvalid", err)
	}
}
