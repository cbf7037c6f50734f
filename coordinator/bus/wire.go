// Package bus is the contract between the coordinator and the nodes over
// NATS: bucket, stream and subject names, the JSON messages that travel on
// them, and the NATS plumbing both sides share (an embedded server, client
// connections, bucket provisioning, watchers that survive reconnects).
//
// Every message type has a Validate method; a receiver validates what it
// decodes before acting on it and drops (and logs) what fails.
package bus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
)

// Names under a configurable prefix (default "petrel"). Buckets use
// dashes, streams upper case, subjects dots.
type Names struct {
	Prefix string
}

// DefaultPrefix is the prefix of every bucket, stream and subject.
const DefaultPrefix = "petrel"

func (n Names) prefix() string {
	if n.Prefix == "" {
		return DefaultPrefix
	}
	return n.Prefix
}

// Artifacts is the object store bucket of model artifacts, one object per
// digest (object name: the digest's hex, without "sha256:").
func (n Names) Artifacts() string { return n.prefix() + "-artifacts" }

// Registry is the KV bucket of signed manifests, key "<model>.<version>".
func (n Names) Registry() string { return n.prefix() + "-registry" }

// Desired is the KV bucket of desired state, key "<model>".
func (n Names) Desired() string { return n.prefix() + "-desired" }

// Rollouts is the KV bucket of rollout state, key "<model>".
func (n Names) Rollouts() string { return n.prefix() + "-rollouts" }

// AuditStream is the stream of audit events on AuditSubject(">").
func (n Names) AuditStream() string { return upper(n.prefix()) + "_AUDIT" }

// AuditSubject is the subject of an audit event of the given kind.
func (n Names) AuditSubject(kind string) string { return n.prefix() + ".audit." + kind }

// StatusSubject is where a node publishes its NodeStatus. Node ids may
// contain dots (see ValidNodeID), so subscribe to every node with node ">"
// rather than "*".
func (n Names) StatusSubject(node string) string { return n.prefix() + ".status." + node }

// StatsSubject is where a node publishes its NodeStats (node ">" for every
// node, as with StatusSubject).
func (n Names) StatsSubject(node string) string { return n.prefix() + ".stats." + node }

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '-' || c == '.':
			b[i] = '_'
		}
	}
	return string(b)
}

// SignedManifest is a registry entry: the manifest's JSON bytes exactly as
// signed, and the coordinator's ed25519 signature over them.
type SignedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature []byte          `json:"signature"` // ed25519, base64 in JSON
	KeyID     string          `json:"key_id"`    // first 16 hex of sha256(public key)
}

// Desired is the desired state of one model: the versions nodes should
// serve, where, and how traffic is split between them.
type Desired struct {
	Model     string           `json:"model"`
	Versions  []DesiredVersion `json:"versions"`
	Placement Placement        `json:"placement"`
	// Rollout names the rollout that last wrote this state, if any.
	Rollout   string    `json:"rollout,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DesiredVersion is one version to serve. Weights are percentages of the
// model's traffic and add up to 100 over the versions that have any;
// Shadow is the share (0-100) of the serving traffic mirrored to this
// version, whose responses are discarded and compared.
type DesiredVersion struct {
	Version string  `json:"version"`
	Digest  string  `json:"digest"`
	Weight  float64 `json:"weight"`
	Shadow  float64 `json:"shadow,omitempty"`
}

// Placement says which nodes serve the model. Empty Regions and Labels
// mean every node. MinReplicasPerRegion is what the coordinator checks and
// reports; nodes that match always load.
type Placement struct {
	Regions              []string          `json:"regions,omitempty"`
	Labels               map[string]string `json:"labels,omitempty"`
	MinReplicasPerRegion int               `json:"min_replicas_per_region,omitempty"`
}

// NodeStatus is what a node publishes about itself every second.
type NodeStatus struct {
	Node     string            `json:"node"`
	Role     string            `json:"role"` // edge | central
	Region   string            `json:"region,omitempty"`
	Lat      float64           `json:"lat"`
	Lon      float64           `json:"lon"`
	HasLoc   bool              `json:"has_loc"`
	Labels   map[string]string `json:"labels,omitempty"`
	HTTPURL  string            `json:"http_url"` // base URL for clients
	Load     int               `json:"load"`     // in flight + queued
	Models   []ModelStatus     `json:"models,omitempty"`
	Sent     time.Time         `json:"sent"`
	Draining bool              `json:"draining,omitempty"`
}

// ModelStatus is one model version on a node: READY, LOADING or FAILED
// with the reason.
type ModelStatus struct {
	Model   string `json:"model"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	// PSI is the largest feature population stability index of the
	// version's recent inputs against its baseline (drift), when known.
	PSI float64 `json:"psi,omitempty"`
}

// NodeStats is a node's cumulative per-version figures since it started
// (cumulative, so a lost message loses nothing; the receiver takes
// differences and treats a decrease as a restart).
type NodeStats struct {
	Node     string         `json:"node"`
	Started  time.Time      `json:"started"`
	Sent     time.Time      `json:"sent"`
	Versions []VersionStats `json:"versions"`
}

// LatencyBounds are the upper bounds, in seconds, of the latency histogram
// buckets in VersionStats; the last bucket is everything above.
var LatencyBounds = []float64{
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5,
}

// VersionStats is one version's cumulative figures on one node.
type VersionStats struct {
	Model    string   `json:"model"`
	Version  string   `json:"version"`
	Requests uint64   `json:"requests"`
	Errors   uint64   `json:"errors"`
	Latency  []uint64 `json:"latency"` // len(LatencyBounds)+1 counts
	// Shadow figures when this version is a shadow: mirrored requests,
	// failed ones, and how far its outputs were from the serving version's.
	Shadow *ShadowStats `json:"shadow,omitempty"`
}

// ShadowStats compares a shadow version's outputs with the serving
// version's on the same requests.
type ShadowStats struct {
	Against     string  `json:"against"` // the serving version compared with
	Mirrored    uint64  `json:"mirrored"`
	Failed      uint64  `json:"failed"`
	Compared    uint64  `json:"compared"`     // elements compared
	SumAbsDiff  float64 `json:"sum_abs_diff"` // over Compared elements
	MaxAbsDiff  float64 `json:"max_abs_diff"`
	Mismatched  uint64  `json:"mismatched"` // responses whose top-1 differs
	SumSquaredD float64 `json:"sum_squared_diff"`
}

// AuditEvent is one entry of the audit stream.
type AuditEvent struct {
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"` // push, validate, rollout.start, rollout.step, promote, rollback, rm, ...
	Actor   string            `json:"actor"`
	Model   string            `json:"model,omitempty"`
	Version string            `json:"version,omitempty"`
	OK      bool              `json:"ok"`
	Detail  string            `json:"detail,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	Seq     uint64            `json:"seq,omitempty"` // stream sequence, set when read back
}

// Node roles and model states as they appear in NodeStatus.
const (
	RoleEdge    = "edge"
	RoleCentral = "central"

	StateReady   = "READY"
	StateLoading = "LOADING"
	StateFailed  = "FAILED"
)

// Limits on what a message may hold. A message over them is invalid.
const (
	// MaxMessageBytes is the largest encoded message Decode* accept, and
	// the largest value the KV buckets take.
	MaxMessageBytes = 1 << 20
	// MaxModelsPerNode bounds NodeStatus.Models and NodeStats.Versions.
	MaxModelsPerNode = 10000
	// MaxVersionsPerModel bounds Desired.Versions.
	MaxVersionsPerModel = 1000
	// MaxLabels bounds every label map.
	MaxLabels = 64
	// maxText bounds free-text fields (reasons, details, actors, ...).
	maxText = 4096
	// maxShort bounds short identifiers (regions, roles, key ids, ...).
	maxShort = 128
)

// Sentinel errors of message decoding and validation.
var (
	// ErrInvalid wraps every validation failure of a wire message.
	ErrInvalid = errors.New("invalid message")
	// ErrTooLarge is returned for a message or value over its size limit.
	ErrTooLarge = errors.New("too large")
)

var (
	nodeIDRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	tokensRE   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	prefixRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	keyIDRE    = regexp.MustCompile(`^[0-9a-f]{16}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$`)
	regionRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// weightSlack is how far from 100 the weights of a Desired may add up to.
const weightSlack = 0.01

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// ValidNodeID reports whether s can identify a node: 1-128 letters,
// digits, '_', '.', '-', not starting or ending with '.' and without
// "..", so that it is one or more subject tokens.
func ValidNodeID(s string) bool {
	return nodeIDRE.MatchString(s) && s[0] != '.' && s[len(s)-1] != '.' && !strings.Contains(s, "..")
}

// ValidDigest reports whether s is an artifact digest: "sha256:" and 64
// lower-case hex digits, as models.DigestBytes writes it.
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

// ValidKind reports whether s can be an audit event kind: one or more
// dot-separated subject tokens of letters, digits, '_' and '-' (so no
// wildcards), at most 128 characters.
func ValidKind(s string) bool { return len(s) <= maxShort && tokensRE.MatchString(s) }

// Validate checks that the prefix can be part of bucket, stream and
// subject names: 1-64 letters, digits, '_' or '-'. The empty prefix
// stands for DefaultPrefix.
func (n Names) Validate() error {
	if n.Prefix == "" {
		return nil
	}
	if !prefixRE.MatchString(n.Prefix) {
		return fmt.Errorf("names prefix %q: want 1-64 letters, digits, '_' or '-'", n.Prefix)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func validLabels(what string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid("%s: %d labels, at most %d", what, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return invalid("%s: label key %q: want 1-63 letters, digits, '_', '.', '/', '-'", what, k)
		}
		if len(v) > maxShort*2 {
			return invalid("%s: label %q: value longer than %d bytes", what, k, maxShort*2)
		}
	}
	return nil
}

// Validate checks the manifest bytes are a non-empty JSON value, the
// signature is an ed25519 signature's length and the key id is 16
// lower-case hex digits. It does not verify the signature.
func (m *SignedManifest) Validate() error {
	if len(bytes.TrimSpace(m.Manifest)) == 0 {
		return invalid("signed manifest: empty manifest")
	}
	if len(m.Manifest) > MaxMessageBytes {
		return invalid("signed manifest: manifest of %d bytes, at most %d", len(m.Manifest), MaxMessageBytes)
	}
	if !json.Valid(m.Manifest) {
		return invalid("signed manifest: manifest is not valid JSON")
	}
	if len(m.Signature) != ed25519.SignatureSize {
		return invalid("signed manifest: signature of %d bytes, want %d", len(m.Signature), ed25519.SignatureSize)
	}
	if !keyIDRE.MatchString(m.KeyID) {
		return invalid("signed manifest: key id %q: want 16 lower-case hex digits", m.KeyID)
	}
	return nil
}

// Validate checks the desired state: a valid model name; versions unique,
// each with a valid version name and digest; weights in [0, 100] adding up
// to 100 (within 0.01) when any is above 0 (a Desired whose weights are
// all 0, or with no versions, serves nothing); shadows in [0, 100]; and
// sane placement.
func (d *Desired) Validate() error {
	if !models.ValidName(d.Model) {
		return invalid("desired: model %q: want 1-128 letters, digits, '_', '.', '-'", d.Model)
	}
	if len(d.Versions) > MaxVersionsPerModel {
		return invalid("desired %q: %d versions, at most %d", d.Model, len(d.Versions), MaxVersionsPerModel)
	}
	seen := make(map[string]bool, len(d.Versions))
	var sum float64
	anyWeight := false
	for _, v := range d.Versions {
		if !models.ValidVersion(v.Version) {
			return invalid("desired %q: version %q: want 1-64 letters, digits, '_', '.', '-'", d.Model, v.Version)
		}
		if seen[v.Version] {
			return invalid("desired %q: version %q appears twice", d.Model, v.Version)
		}
		seen[v.Version] = true
		if !ValidDigest(v.Digest) {
			return invalid("desired %q: version %q: digest %q: want sha256:<64 hex digits>", d.Model, v.Version, v.Digest)
		}
		if !finite(v.Weight) || v.Weight < 0 || v.Weight > 100 {
			return invalid("desired %q: version %q: weight %v not in [0, 100]", d.Model, v.Version, v.Weight)
		}
		if !finite(v.Shadow) || v.Shadow < 0 || v.Shadow > 100 {
			return invalid("desired %q: version %q: shadow %v not in [0, 100]", d.Model, v.Version, v.Shadow)
		}
		if v.Weight > 0 {
			anyWeight = true
		}
		sum += v.Weight
	}
	if anyWeight && math.Abs(sum-100) > weightSlack {
		return invalid("desired %q: weights add up to %v, want 100", d.Model, sum)
	}
	if err := d.Placement.validate(d.Model); err != nil {
		return err
	}
	if len(d.Rollout) > maxShort {
		return invalid("desired %q: rollout name longer than %d bytes", d.Model, maxShort)
	}
	return nil
}

func (p *Placement) validate(model string) error {
	if len(p.Regions) > MaxLabels {
		return invalid("desired %q: %d regions, at most %d", model, len(p.Regions), MaxLabels)
	}
	for _, r := range p.Regions {
		if !regionRE.MatchString(r) {
			return invalid("desired %q: region %q: want 1-128 letters, digits, '_', '.', '-'", model, r)
		}
	}
	if err := validLabels(fmt.Sprintf("desired %q: placement", model), p.Labels); err != nil {
		return err
	}
	if p.MinReplicasPerRegion < 0 || p.MinReplicasPerRegion > 1_000_000 {
		return invalid("desired %q: min replicas per region %d not in [0, 1000000]", model, p.MinReplicasPerRegion)
	}
	return nil
}

// Validate checks the node id (see ValidNodeID), the role, the location
// (latitude in [-90, 90], longitude in [-180, 180]), the HTTP URL when
// set, the load, and at most MaxModelsPerNode models with valid names and
// states.
func (s *NodeStatus) Validate() error {
	if !ValidNodeID(s.Node) {
		return invalid("node status: node id %q: want 1-128 letters, digits, '_', '.', '-'", s.Node)
	}
	if s.Role != RoleEdge && s.Role != RoleCentral {
		return invalid("node status %q: role %q: want %q or %q", s.Node, s.Role, RoleEdge, RoleCentral)
	}
	if s.Region != "" && !regionRE.MatchString(s.Region) {
		return invalid("node status %q: region %q: want 1-128 letters, digits, '_', '.', '-'", s.Node, s.Region)
	}
	if !finite(s.Lat) || s.Lat < -90 || s.Lat > 90 {
		return invalid("node status %q: latitude %v not in [-90, 90]", s.Node, s.Lat)
	}
	if !finite(s.Lon) || s.Lon < -180 || s.Lon > 180 {
		return invalid("node status %q: longitude %v not in [-180, 180]", s.Node, s.Lon)
	}
	if err := validLabels(fmt.Sprintf("node status %q", s.Node), s.Labels); err != nil {
		return err
	}
	if s.HTTPURL != "" {
		if len(s.HTTPURL) > maxText {
			return invalid("node status %q: http url longer than %d bytes", s.Node, maxText)
		}
		u, err := url.Parse(s.HTTPURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("node status %q: http url %q: want http(s)://host[:port]", s.Node, s.HTTPURL)
		}
	}
	if s.Load < 0 {
		return invalid("node status %q: negative load %d", s.Node, s.Load)
	}
	if len(s.Models) > MaxModelsPerNode {
		return invalid("node status %q: %d models, at most %d", s.Node, len(s.Models), MaxModelsPerNode)
	}
	for _, m := range s.Models {
		if !models.ValidName(m.Model) || !models.ValidVersion(m.Version) {
			return invalid("node status %q: model %q version %q: bad name", s.Node, m.Model, m.Version)
		}
		switch m.State {
		case StateReady, StateLoading, StateFailed:
		default:
			return invalid("node status %q: model %s/%s: state %q: want %s, %s or %s",
				s.Node, m.Model, m.Version, m.State, StateReady, StateLoading, StateFailed)
		}
		if len(m.Reason) > maxText {
			return invalid("node status %q: model %s/%s: reason longer than %d bytes", s.Node, m.Model, m.Version, maxText)
		}
		if m.PSI < 0 || math.IsNaN(m.PSI) || math.IsInf(m.PSI, 0) {
			return invalid("node status %q: model %s/%s: PSI %v", s.Node, m.Model, m.Version, m.PSI)
		}
	}
	return nil
}

// Validate checks the node id, at most MaxModelsPerNode versions with
// valid names, len(LatencyBounds)+1 latency counts each, errors not above
// requests, and consistent shadow figures.
func (s *NodeStats) Validate() error {
	if !ValidNodeID(s.Node) {
		return invalid("node stats: node id %q: want 1-128 letters, digits, '_', '.', '-'", s.Node)
	}
	if len(s.Versions) > MaxModelsPerNode {
		return invalid("node stats %q: %d versions, at most %d", s.Node, len(s.Versions), MaxModelsPerNode)
	}
	for i := range s.Versions {
		v := &s.Versions[i]
		if !models.ValidName(v.Model) || !models.ValidVersion(v.Version) {
			return invalid("node stats %q: model %q version %q: bad name", s.Node, v.Model, v.Version)
		}
		if v.Errors > v.Requests {
			return invalid("node stats %q: %s/%s: %d errors out of %d requests", s.Node, v.Model, v.Version, v.Errors, v.Requests)
		}
		if len(v.Latency) != len(LatencyBounds)+1 {
			return invalid("node stats %q: %s/%s: %d latency buckets, want %d", s.Node, v.Model, v.Version, len(v.Latency), len(LatencyBounds)+1)
		}
		if sh := v.Shadow; sh != nil {
			if !models.ValidVersion(sh.Against) {
				return invalid("node stats %q: %s/%s: shadow against %q: bad version", s.Node, v.Model, v.Version, sh.Against)
			}
			if sh.Failed > sh.Mirrored {
				return invalid("node stats %q: %s/%s: %d shadow failures out of %d mirrored", s.Node, v.Model, v.Version, sh.Failed, sh.Mirrored)
			}
			for _, f := range []float64{sh.SumAbsDiff, sh.MaxAbsDiff, sh.SumSquaredD} {
				if !finite(f) || f < 0 {
					return invalid("node stats %q: %s/%s: shadow difference %v is negative or not finite", s.Node, v.Model, v.Version, f)
				}
			}
		}
	}
	return nil
}

// Validate checks the event has a time, a valid kind (see ValidKind) and
// free-text fields of bounded size.
func (e *AuditEvent) Validate() error {
	if !ValidKind(e.Kind) {
		return invalid("audit event: kind %q: want dot-separated tokens of letters, digits, '_', '-'", e.Kind)
	}
	if e.Time.IsZero() {
		return invalid("audit event %s: no time", e.Kind)
	}
	if len(e.Actor) > maxShort*2 || len(e.Model) > maxShort || len(e.Version) > maxShort || len(e.Detail) > maxText {
		return invalid("audit event %s: actor, model, version or detail too long", e.Kind)
	}
	if len(e.Fields) > MaxLabels {
		return invalid("audit event %s: %d fields, at most %d", e.Kind, len(e.Fields), MaxLabels)
	}
	for k, v := range e.Fields {
		if k == "" || len(k) > maxShort || len(v) > maxText {
			return invalid("audit event %s: field %q: empty or too long key, or value too long", e.Kind, k)
		}
	}
	return nil
}

// validator is implemented by every wire message.
type validator interface{ Validate() error }

// decode unmarshals b (at most MaxMessageBytes; unknown fields are
// ignored for forward compatibility) into a new T and validates it.
func decode[T any, P interface {
	*T
	validator
}](what string, b []byte) (*T, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("decode %s: %d bytes: %w (limit %d)", what, len(b), ErrTooLarge, MaxMessageBytes)
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", what, ErrInvalid, err)
	}
	if err := P(v).Validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return v, nil
}

// DecodeDesired decodes and validates a Desired.
func DecodeDesired(b []byte) (*Desired, error) { return decode[Desired]("desired", b) }

// DecodeNodeStatus decodes and validates a NodeStatus.
func DecodeNodeStatus(b []byte) (*NodeStatus, error) { return decode[NodeStatus]("node status", b) }

// DecodeNodeStats decodes and validates a NodeStats.
func DecodeNodeStats(b []byte) (*NodeStats, error) { return decode[NodeStats]("node stats", b) }

// DecodeSignedManifest decodes and validates a SignedManifest.
func DecodeSignedManifest(b []byte) (*SignedManifest, error) {
	return decode[SignedManifest]("signed manifest", b)
}

// DecodeAuditEvent decodes and validates an AuditEvent.
func DecodeAuditEvent(b []byte) (*AuditEvent, error) { return decode[AuditEvent]("audit event", b) }
