package bus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/petrel-mesh/petrel/models"
)

// Federated rounds on NATS. The coordinator publishes a RoundStart on
// FLStart(round); the sampled nodes train and publish their update on
// FLUpdate(round, node). Both subjects are captured by the FLStream
// stream, so an update the node saw acknowledged is stored even when the
// coordinator is down at that moment, and a restarted coordinator reads a
// round's updates back.

// FLStream is the stream of federated round messages.
func (n Names) FLStream() string { return upper(n.prefix()) + "_FL" }

// FLSubjects is the stream's subject filter.
func (n Names) FLSubjects() string { return n.prefix() + ".fl.>" }

// FLStart is where a round's start is announced.
func (n Names) FLStart(round string) string { return n.prefix() + ".fl." + round + ".start" }

// FLUpdate is where a node sends its update for a round ("*" wildcards).
func (n Names) FLUpdate(round, node string) string {
	return n.prefix() + ".fl." + round + ".update." + node
}

// Rounds is the KV bucket of round state, key = round id.
func (n Names) Rounds() string { return n.prefix() + "-rounds" }

// ProvisionFL creates (or updates) the federated stream and the rounds
// bucket. Updates are kept for a day: rounds are short.
func ProvisionFL(ctx context.Context, js jetstream.JetStream, names Names, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 {
		replicas = 1
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: names.FLStream(), Subjects: []string{names.FLSubjects()}, Storage: jetstream.FileStorage,
		Replicas: replicas, MaxAge: 24 * time.Hour, MaxMsgSize: MaxUpdateBytes, Discard: jetstream.DiscardOld,
		Description: "Petrel federated rounds: starts and client updates",
	}); err != nil {
		return nil, fmt.Errorf("provision %s: %w", names.FLStream(), err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: names.Rounds(), Storage: jetstream.FileStorage,
		Replicas: replicas, History: 1, Description: "Petrel federated round state"})
	if err != nil {
		return nil, fmt.Errorf("provision %s: %w", names.Rounds(), err)
	}
	return kv, nil
}

// MaxUpdateBytes bounds an update message (NATS's default max payload is
// 1 MiB: ~260k float32 parameters).
const MaxUpdateBytes = 1 << 20

var roundIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidRoundID reports whether s can name a round (a subject token).
func ValidRoundID(s string) bool { return roundIDRE.MatchString(s) }

// RoundStart tells the sampled nodes to train.
type RoundStart struct {
	Round       string    `json:"round"`
	Model       string    `json:"model"`
	BaseVersion string    `json:"base_version"`
	BaseDigest  string    `json:"base_digest"`
	NumParams   int       `json:"num_params"`
	Clients     []string  `json:"clients"`
	Deadline    time.Time `json:"deadline"`
	// Client training: minibatch SGD over the node's feedback.
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	BatchSize   int     `json:"batch_size"`
	Epochs      int     `json:"epochs"`
	ProxMu      float64 `json:"prox_mu,omitempty"` // FedProx
	MaxSamples  int     `json:"max_samples"`       // feedback rows a client trains on, at most
	// Clip is the L2 bound a client clips its update to (differential
	// privacy; 0 = no clipping).
	Clip float64 `json:"clip,omitempty"`
	Seed uint64  `json:"seed"`
}

// Validate checks a round start's fields.
func (r *RoundStart) Validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: round start: %s", ErrInvalid, fmt.Sprintf(f, a...))
	}
	switch {
	case !ValidRoundID(r.Round):
		return bad("round id %q", r.Round)
	case !models.ValidName(r.Model):
		return bad("model %q", r.Model)
	case !models.ValidVersion(r.BaseVersion):
		return bad("base version %q", r.BaseVersion)
	case !ValidDigest(r.BaseDigest):
		return bad("base digest %q", r.BaseDigest)
	case r.NumParams <= 0 || r.NumParams > MaxUpdateBytes/4:
		return bad("num params %d: want 1..%d", r.NumParams, MaxUpdateBytes/4)
	case len(r.Clients) == 0 || len(r.Clients) > 100000:
		return bad("%d clients", len(r.Clients))
	case !(r.LR > 0 && r.LR <= 10):
		return bad("lr %v: want (0, 10]", r.LR)
	case r.Momentum < 0 || r.Momentum >= 1 || r.WeightDecay < 0 || r.WeightDecay > 1 || r.ProxMu < 0 || r.ProxMu > 100:
		return bad("momentum %v, weight decay %v, prox mu %v out of range", r.Momentum, r.WeightDecay, r.ProxMu)
	case r.BatchSize < 1 || r.BatchSize > 4096 || r.Epochs < 1 || r.Epochs > 100:
		return bad("batch size %d, epochs %d out of range", r.BatchSize, r.Epochs)
	case r.MaxSamples < 1 || r.MaxSamples > 10_000_000:
		return bad("max samples %d", r.MaxSamples)
	case r.Clip < 0 || math.IsNaN(r.Clip) || math.IsInf(r.Clip, 0):
		return bad("clip %v", r.Clip)
	case r.Deadline.IsZero():
		return bad("no deadline")
	}
	seen := map[string]bool{}
	for _, c := range r.Clients {
		if !ValidNodeID(c) || seen[c] {
			return bad("client %q invalid or repeated", c)
		}
		seen[c] = true
	}
	return nil
}

// DecodeRoundStart decodes and validates a round start.
func DecodeRoundStart(b []byte) (*RoundStart, error) { return decode[RoundStart]("round start", b) }

// UpdateHeader describes a client's update. The delta (local parameters
// minus the base's, flattened as federated.Flatten does) follows it.
type UpdateHeader struct {
	Round       string  `json:"round"`
	Node        string  `json:"node"`
	BaseVersion string  `json:"base_version"`
	Samples     int     `json:"samples"`
	NumParams   int     `json:"num_params"`
	Loss        float64 `json:"loss"`
	Clipped     bool    `json:"clipped,omitempty"`
}

// EncodeUpdate lays an update out as: 4-byte big-endian header length,
// the JSON header, then NumParams little-endian float32s.
func EncodeUpdate(h UpdateHeader, delta []float32) ([]byte, error) {
	h.NumParams = len(delta)
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	n := 4 + len(hj) + 4*len(delta)
	if n > MaxUpdateBytes {
		return nil, fmt.Errorf("update of %d parameters is %d bytes: %w (limit %d)", len(delta), n, ErrTooLarge, MaxUpdateBytes)
	}
	b := make([]byte, 4, n)
	binary.BigEndian.PutUint32(b, uint32(len(hj)))
	b = append(b, hj...)
	for _, x := range delta {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b, nil
}

// ErrBadUpdate wraps every reason DecodeUpdate refuses a message.
var ErrBadUpdate = errors.New("malformed update")

// DecodeUpdate parses and checks an update message: sizes, header fields,
// and finite parameters.
func DecodeUpdate(b []byte) (*UpdateHeader, []float32, error) {
	bad := func(f string, a ...any) (*UpdateHeader, []float32, error) {
		return nil, nil, fmt.Errorf("%w: %s", ErrBadUpdate, fmt.Sprintf(f, a...))
	}
	if len(b) > MaxUpdateBytes {
		return bad("%d bytes, limit %d", len(b), MaxUpdateBytes)
	}
	if len(b) < 4 {
		return bad("%d bytes: no header length", len(b))
	}
	hl := int(binary.BigEndian.Uint32(b))
	if hl <= 0 || hl > 4096 || 4+hl > len(b) {
		return bad("header length %d in a %d-byte message", hl, len(b))
	}
	var h UpdateHeader
	if err := json.Unmarshal(b[4:4+hl], &h); err != nil {
		return bad("header: %v", err)
	}
	switch {
	case !ValidRoundID(h.Round):
		return bad("round %q", h.Round)
	case !ValidNodeID(h.Node):
		return bad("node %q", h.Node)
	case !models.ValidVersion(h.BaseVersion):
		return bad("base version %q", h.BaseVersion)
	case h.Samples <= 0:
		return bad("samples %d", h.Samples)
	case math.IsNaN(h.Loss) || math.IsInf(h.Loss, 0):
		return bad("loss %v", h.Loss)
	}
	body := b[4+hl:]
	if len(body) != 4*h.NumParams || h.NumParams <= 0 {
		return bad("header says %d parameters, the message carries %d bytes of them", h.NumParams, len(body))
	}
	delta := make([]float32, h.NumParams)
	for i := range delta {
		x := math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return bad("parameter %d is %v", i, x)
		}
		delta[i] = x
	}
	return &h, delta, nil
}
