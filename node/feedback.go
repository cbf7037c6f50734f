package node

// Feedback and online learning at the node: the feedback endpoints, the
// inputs remembered for labels that arrive later, personal data rules,
// prequential accuracy, drift (population stability index) and online
// learning of a local copy of each trainable model. docs/node.md,
// "Feedback and online learning", describes the API; this file holds the
// state behind it.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/petrel-mesh/petrel/federated"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/node/feedback"
)

// ErrFeedbackDisabled is returned by the feedback methods of a node
// started without a feedback directory.
var ErrFeedbackDisabled = errors.New("feedback is not enabled on this node")

// PersonalRule names input features that must not reach the feedback log
// as they are: Drop features are written as 0, Hash features as
// HMAC-SHA256(node key, model, feature index, value) mapped to [0, 1).
// Both apply before anything is written to disk or kept in memory, to
// labelled examples and to remembered inference inputs alike. Indexes are
// zero-based positions in the model's input row.
type PersonalRule struct {
	Drop []int `json:"drop,omitempty"`
	Hash []int `json:"hash,omitempty"`
}

// maxPersonalFeatures bounds the indexes of one rule.
const maxPersonalFeatures = 1 << 16

func (r *PersonalRule) validate() error {
	if len(r.Drop)+len(r.Hash) > maxPersonalFeatures {
		return fmt.Errorf("%d feature indexes: at most %d", len(r.Drop)+len(r.Hash), maxPersonalFeatures)
	}
	seen := make(map[int]string, len(r.Drop)+len(r.Hash))
	for _, list := range []struct {
		name string
		idx  []int
	}{{"drop", r.Drop}, {"hash", r.Hash}} {
		for _, i := range list.idx {
			if i < 0 || i >= feedback.MaxInputs {
				return fmt.Errorf("%s: feature index %d is outside 0..%d", list.name, i, feedback.MaxInputs-1)
			}
			if prev, dup := seen[i]; dup {
				if prev == list.name {
					return fmt.Errorf("%s: feature %d is listed twice", list.name, i)
				}
				return fmt.Errorf("feature %d is both dropped and hashed", i)
			}
			seen[i] = list.name
		}
	}
	return nil
}

// Limits of the feedback machinery.
const (
	// maxFeedbackExamples is the most examples one request carries.
	maxFeedbackExamples = 1024
	// maxDriftFeatures: wider inputs get no drift statistics (the window
	// holds window*features bin indexes).
	maxDriftFeatures = 4096
	// maxDriftRowsPerRequest: a large batch contributes its first rows.
	maxDriftRowsPerRequest = 64
	// driftExported is how many features' PSI each version exports.
	driftExported = 16
	// driftBins is the number of quantile bins of a baseline built from
	// the first inputs.
	driftBins = 10
	// psiFloor replaces empty bins' fractions in the PSI sum.
	psiFloor = 1e-4
	// maxKeptFloats bounds the remembered inputs of one model (64 MiB).
	maxKeptFloats = 16 << 20
	// hashKeyFile holds the generated personal data hash key in Dir.
	hashKeyFile = "hash.key"
	// sweepEvery is how often the background loop forgets state of
	// versions that are gone and applies the log's retention.
	sweepEvery = 5 * time.Second
	// onlineStepsPerWake bounds the steps per model before the loop looks
	// at its stop channel again.
	onlineStepsPerWake = 16
)

// feedbackState is everything feedback needs at a node: the log, the
// remembered requests, per-version state, prequential counts and the
// online learners, plus the background goroutine that trains and sweeps.
type feedbackState struct {
	n   *Node
	cfg FeedbackConfig // defaults resolved
	log *feedback.Log
	key []byte // personal data hash key

	states sync.Map // *version -> *verState

	keptMu sync.Mutex
	kept   map[string]*keptRequests // by model

	preqMu sync.Mutex
	preq   map[[2]string]*preqCount // by model, version

	learnMu  sync.Mutex
	learners map[string]*learner // by model

	warnMu sync.Mutex
	warned map[string]bool // warnings logged once

	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// openFeedback opens the feedback log and starts the background loop;
// nothing happens without a feedback directory.
func (n *Node) openFeedback() error {
	if n.cfg.Feedback.Dir == "" {
		return nil
	}
	cfg := n.cfg.Feedback.withDefaults(n.cfg.MaxBodyBytes)
	l, err := feedback.Open(feedback.Config{
		Dir:           cfg.Dir,
		Fsync:         feedback.FsyncPolicy(cfg.Fsync),
		FsyncInterval: cfg.FsyncInterval,
		MaxBytes:      cfg.MaxBytes,
		MaxAge:        cfg.MaxAge,
	})
	if err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	if rec := l.Recovered(); rec.DroppedBytes > 0 {
		n.log.Warn("feedback log: dropped torn or damaged records at segment tails", "bytes", rec.DroppedBytes, "segments", rec.Segments)
	}
	key, err := loadHashKey(cfg)
	if err != nil {
		l.Close()
		return fmt.Errorf("feedback: %w", err)
	}
	fb := &feedbackState{
		n: n, cfg: cfg, log: l, key: key,
		kept: map[string]*keptRequests{}, preq: map[[2]string]*preqCount{},
		learners: map[string]*learner{}, warned: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	n.metrics.feedbackLogBytes.Set(float64(l.Size()))
	fb.wg.Go(fb.loop)
	n.fb = fb
	return nil
}

// closeFeedback stops the background loop and closes the log. Safe to
// call more than once and without feedback.
func (n *Node) closeFeedback() error {
	fb := n.fb
	if fb == nil {
		return nil
	}
	select {
	case <-fb.stop:
		return nil
	default:
	}
	close(fb.stop)
	fb.wg.Wait()
	if err := fb.log.Close(); err != nil {
		return fmt.Errorf("feedback log: %w", err)
	}
	return nil
}

// loadHashKey returns the configured key, else the one kept in the log
// directory, generating it the first time.
func loadHashKey(cfg FeedbackConfig) ([]byte, error) {
	if len(cfg.HashKey) > 0 {
		return bytes.Clone(cfg.HashKey), nil
	}
	p := filepath.Join(cfg.Dir, hashKeyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if len(b) < 16 {
			return nil, fmt.Errorf("%s holds %d bytes, want a key of at least 16", p, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("personal data hash key: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("personal data hash key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return nil, fmt.Errorf("personal data hash key: %w", err)
	}
	return key, nil
}

// classifier is what feedback needs to know about a version's signature.
type classifier struct {
	err      error  // why the version does not take feedback; nil when it does
	input    string // the single FP32 [batch, dim] input
	dim      int
	output   string // the first output, FP32 [batch, width]
	width    int
	classes  int // width, or 2 for a single probability
	drop     []int
	hash     []int
	ruleErr  error // a personal data rule that does not fit the input
	personal bool  // any feature is dropped or hashed
}

// classify checks that sig is a classifier's: one FP32 [batch, features]
// input and a first output FP32 [batch, classes] (one column: a binary
// classifier's probability).
func classify(sig *models.Signature) classifier {
	var c classifier
	if len(sig.Inputs) != 1 {
		c.err = fmt.Errorf("it has %d inputs; feedback needs a classifier with one FP32 [batch, features] input", len(sig.Inputs))
		return c
	}
	in := sig.Inputs[0]
	if in.DataType != models.FP32 || len(in.Shape) != 2 || in.Shape[1] < 1 || in.Shape[1] > feedback.MaxInputs {
		c.err = fmt.Errorf("its input %q is %s %v; feedback needs FP32 [batch, features] with a fixed number of features (at most %d)", in.Name, in.DataType, in.Shape, feedback.MaxInputs)
		return c
	}
	if len(sig.Outputs) == 0 {
		c.err = errors.New("it has no outputs")
		return c
	}
	out := sig.Outputs[0]
	if out.DataType != models.FP32 || len(out.Shape) != 2 || out.Shape[1] < 1 || out.Shape[1] > math.MaxInt32 {
		c.err = fmt.Errorf("its first output %q is %s %v, not a classifier's FP32 [batch, classes]", out.Name, out.DataType, out.Shape)
		return c
	}
	c.input, c.dim, c.output, c.width = in.Name, int(in.Shape[1]), out.Name, int(out.Shape[1])
	c.classes = max(c.width, 2)
	return c
}

// verState is feedback's state of one loaded version.
type verState struct {
	cls   classifier
	drift *driftMonitor // nil when the version is not a classifier or too wide
}

// state returns (creating on first use) the feedback state of v.
func (fb *feedbackState) state(v *version) *verState {
	if st, ok := fb.states.Load(v); ok {
		return st.(*verState)
	}
	st := &verState{cls: classify(&v.manifest.Signature)}
	if st.cls.err == nil {
		fb.resolveRule(v, &st.cls)
		if st.cls.dim <= maxDriftFeatures {
			st.drift = newDriftMonitor(fb, v, st.cls.dim)
		}
	}
	actual, _ := fb.states.LoadOrStore(v, st)
	return actual.(*verState)
}

// resolveRule merges the node's and the model config's personal data
// rules for a version with dim features: a feature either dropped is
// dropped, else hashed if either hashes it.
func (fb *feedbackState) resolveRule(v *version, c *classifier) {
	rules := []PersonalRule{fb.cfg.Personal[v.manifest.Name]}
	if v.config != nil && v.config.Personal != nil {
		rules = append(rules, *v.config.Personal)
	}
	drop, hash := map[int]bool{}, map[int]bool{}
	for _, r := range rules {
		for _, i := range r.Drop {
			drop[i] = true
		}
		for _, i := range r.Hash {
			hash[i] = true
		}
	}
	for i := range drop {
		delete(hash, i)
	}
	c.drop, c.hash = slices.Sorted(maps.Keys(drop)), slices.Sorted(maps.Keys(hash))
	c.personal = len(c.drop)+len(c.hash) > 0
	for _, list := range [][]int{c.drop, c.hash} {
		if len(list) > 0 && list[len(list)-1] >= c.dim {
			c.ruleErr = fmt.Errorf("the personal data rule of model %q names feature %d, but version %s has %d features; fix the rule (node config or config.json \"personal\")",
				v.manifest.Name, list[len(list)-1], v.manifest.Version, c.dim)
		}
	}
}

// sanitize applies the personal data rules to one row in place.
func (fb *feedbackState) sanitize(model string, c *classifier, row []float32) error {
	if c.ruleErr != nil {
		return c.ruleErr
	}
	for _, i := range c.drop {
		row[i] = 0
	}
	for _, i := range c.hash {
		row[i] = fb.hashFeature(model, i, row[i])
	}
	return nil
}

// hashFeature maps (model, feature index, value) to [0, 1) with
// HMAC-SHA256 under the node's key: the same value of the same feature
// always gives the same number, and without the key nothing tells which
// value it was. -0 hashes as 0.
func (fb *feedbackState) hashFeature(model string, i int, v float32) float32 {
	if v == 0 {
		v = 0
	}
	mac := hmac.New(sha256.New, fb.key)
	mac.Write([]byte("petrel.feedback.hash.v1\x00"))
	mac.Write([]byte(model))
	var b [9]byte
	binary.LittleEndian.PutUint32(b[1:], uint32(i))
	binary.LittleEndian.PutUint32(b[5:], math.Float32bits(v))
	mac.Write(b[:])
	sum := mac.Sum(nil)
	return float32(binary.BigEndian.Uint32(sum)>>8) / (1 << 24) // 24 bits: exact in float32, below 1
}

// afterInfer is the inference path's hook: it feeds the drift monitor and
// remembers the inputs of a one-row request that carries an id. It copies
// what it keeps (binary inputs alias the request body).
func (fb *feedbackState) afterInfer(v *version, req *oip.Request, outs []models.Tensor) {
	st := fb.state(v)
	if st.cls.err != nil || len(req.Inputs) != 1 {
		return
	}
	in := &req.Inputs[0]
	dim := st.cls.dim
	if len(in.Shape) != 2 || in.Shape[1] != int64(dim) || len(in.Data) != int(in.Shape[0])*dim*4 {
		return
	}
	rows := int(in.Shape[0])
	if st.drift != nil {
		st.drift.observe(in.Data, rows)
	}
	if req.ID == "" || rows != 1 || len(req.ID) > feedback.MaxRequestIDBytes || !utf8.ValidString(req.ID) {
		return
	}
	row := make([]float32, dim)
	for i := range row {
		row[i] = math.Float32frombits(binary.LittleEndian.Uint32(in.Data[4*i:]))
	}
	if err := fb.sanitize(v.manifest.Name, &st.cls, row); err != nil {
		fb.warnOnce("rule:"+v.manifest.Name+"/"+v.manifest.Version, "inputs not remembered", "model", v.manifest.Name, "err", err)
		return
	}
	fb.keptFor(v.manifest.Name).put(req.ID, keptEntry{
		version: v.manifest.Version, inputs: row, predicted: predicted(&st.cls, outs), classes: st.cls.classes,
	}, fb.keepLimit(dim))
	fb.n.metrics.rememberedRequests.WithLabelValues(v.manifest.Name).Set(float64(fb.keptFor(v.manifest.Name).len()))
}

// predicted is the class of row 0 of the classifier's first output among
// outs: the argmax, or probability >= 0.5 for a binary classifier; -1
// when the response does not hold that output.
func predicted(c *classifier, outs []models.Tensor) int32 {
	for i := range outs {
		o := &outs[i]
		if o.Name != c.output || o.DataType != models.FP32 || len(o.Data) < 4*c.width {
			continue
		}
		at := func(j int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(o.Data[4*j:])) }
		if c.width == 1 {
			if at(0) >= 0.5 {
				return 1
			}
			return 0
		}
		best := 0
		for j := 1; j < c.width; j++ {
			if at(j) > at(best) {
				best = j
			}
		}
		return int32(best)
	}
	return -1
}

// keepLimit is how many requests of dim features are remembered per model.
func (fb *feedbackState) keepLimit(dim int) int {
	return max(1, min(fb.cfg.KeepInputs, maxKeptFloats/dim))
}

func (fb *feedbackState) keptFor(model string) *keptRequests {
	fb.keptMu.Lock()
	defer fb.keptMu.Unlock()
	k := fb.kept[model]
	if k == nil {
		k = &keptRequests{byID: map[string]keptEntry{}}
		fb.kept[model] = k
	}
	return k
}

func (fb *feedbackState) warnOnce(key, msg string, args ...any) {
	fb.warnMu.Lock()
	seen := fb.warned[key]
	fb.warned[key] = true
	fb.warnMu.Unlock()
	if !seen {
		fb.n.log.Warn("feedback: "+msg, args...)
	}
}

// keptRequests remembers the inputs of recent requests of one model by
// id, the oldest forgotten first.
type keptRequests struct {
	mu    sync.Mutex
	byID  map[string]keptEntry
	queue []keptKey // insertion order; entries replaced or taken since are stale
	seq   uint64
}

type keptKey struct {
	id  string
	seq uint64
}

type keptEntry struct {
	seq       uint64
	version   string
	inputs    []float32 // personal data rules applied
	predicted int32     // -1: unknown
	classes   int
}

func (k *keptRequests) put(id string, e keptEntry, limit int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	e.seq = k.seq
	k.byID[id] = e
	k.queue = append(k.queue, keptKey{id, e.seq})
	for len(k.byID) > limit && len(k.queue) > 0 {
		h := k.queue[0]
		k.queue = k.queue[1:]
		if cur, ok := k.byID[h.id]; ok && cur.seq == h.seq {
			delete(k.byID, h.id)
		}
	}
	if len(k.queue) > 2*limit+64 { // drop stale keys
		live := k.queue[:0]
		for _, q := range k.queue {
			if cur, ok := k.byID[q.id]; ok && cur.seq == q.seq {
				live = append(live, q)
			}
		}
		k.queue = slices.Clip(live)
	}
}

// take removes and returns the entry of id.
func (k *keptRequests) take(id string) (keptEntry, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.byID[id]
	if ok {
		delete(k.byID, id)
	}
	return e, ok
}

// restore puts back an entry taken by a request that then failed, unless
// a newer request reused the id meanwhile.
func (k *keptRequests) restore(id string, e keptEntry, limit int) {
	k.mu.Lock()
	_, exists := k.byID[id]
	k.mu.Unlock()
	if !exists {
		k.put(id, e, limit)
	}
}

func (k *keptRequests) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.byID)
}

// feedbackExample is one example of a feedback request body.
type feedbackExample struct {
	Inputs json.RawMessage `json:"inputs,omitempty"`
	ID     *string         `json:"id,omitempty"`
	Label  *int64          `json:"label,omitempty"`
}

// httpError is an error with the status to answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func httpErr(status int, format string, a ...any) *httpError {
	return &httpError{status, fmt.Sprintf(format, a...)}
}

// handleFeedback serves POST /v2/models/{model}[/versions/{version}]/feedback.
func (n *Node) handleFeedback(w http.ResponseWriter, r *http.Request) {
	if n.fb == nil {
		writeError(w, http.StatusNotFound, ErrFeedbackDisabled.Error()+": start the node with a feedback directory (Config.Feedback.Dir)")
		return
	}
	accepted, err := n.fb.accept(r)
	if err != nil {
		status := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			status = he.status
		}
		n.metrics.feedbackRejected.WithLabelValues(strconv.Itoa(status)).Inc()
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": accepted})
}

// taken is a remembered request a feedback request labels.
type taken struct {
	id    string
	entry keptEntry
	label int32
}

// accept validates a feedback request, writes its examples durably and
// returns how many there were. Nothing is written unless every example is
// valid.
func (fb *feedbackState) accept(r *http.Request) (int, error) {
	n := fb.n
	name, ver := r.PathValue("model"), r.PathValue("version")
	v, err := n.models.lookup(name, ver)
	if err != nil {
		switch {
		case errors.Is(err, ErrModelNotFound), errors.Is(err, ErrVersionNotFound):
			return 0, httpErr(http.StatusNotFound, "%v", err)
		case errors.Is(err, ErrModelNotReady):
			return 0, httpErr(http.StatusServiceUnavailable, "%v", err)
		}
		return 0, err
	}
	st := fb.state(v)
	if st.cls.err != nil {
		return 0, httpErr(http.StatusBadRequest, "model %q version %s does not take feedback: %v", name, v.manifest.Version, st.cls.err)
	}
	body, err := readBody(r, nil, fb.cfg.MaxBodyBytes)
	if err != nil {
		if st := bodyErrStatus(err); st == http.StatusRequestEntityTooLarge {
			return 0, httpErr(st, "feedback %v", err)
		}
		return 0, httpErr(http.StatusBadRequest, "%v", err)
	}
	examples, err := decodeFeedback(body)
	if err != nil {
		return 0, err
	}

	kept := fb.keptFor(name)
	var takens []taken
	ok := false
	defer func() {
		if !ok {
			for _, t := range takens {
				kept.restore(t.id, t.entry, fb.keepLimit(len(t.entry.inputs)))
			}
		}
	}()
	recs := make([]feedback.Record, 0, len(examples))
	var rows []float32
	var labels []int32
	for i, ex := range examples {
		at := ""
		if len(examples) > 1 {
			at = fmt.Sprintf("example %d: ", i)
		}
		rec := feedback.Record{Model: name}
		classes := st.cls.classes
		if ex.ID != nil {
			e, found := kept.take(*ex.ID)
			if !found {
				return 0, httpErr(http.StatusNotFound, "%sno remembered inference request with id %q for model %q: the node keeps the inputs of the last %d one-row requests with an id per model, each until it is labelled",
					at, *ex.ID, name, fb.keepLimit(st.cls.dim))
			}
			takens = append(takens, taken{id: *ex.ID, entry: e, label: int32(*ex.Label)})
			if ver != "" && e.version != ver {
				return 0, httpErr(http.StatusBadRequest, "%srequest %q was served by version %s, not %s", at, *ex.ID, e.version, ver)
			}
			rec.Version, rec.RequestID, rec.Inputs, classes = e.version, *ex.ID, e.inputs, e.classes
		} else {
			row, err := fb.decodeInputs(v, &st.cls, ex.Inputs)
			if err != nil {
				return 0, httpErr(http.StatusBadRequest, "%s%v", at, err)
			}
			if err := fb.sanitize(name, &st.cls, row); err != nil {
				return 0, err
			}
			rec.Version, rec.Inputs = v.manifest.Version, row
		}
		if l := *ex.Label; l < 0 || l >= int64(classes) {
			return 0, httpErr(http.StatusBadRequest, "%slabel %d is outside 0..%d: model %q version %s has %d classes", at, l, classes-1, name, rec.Version, classes)
		}
		rec.Label = int32(*ex.Label)
		recs = append(recs, rec)
		if len(rec.Inputs) == st.cls.dim {
			rows = append(rows, rec.Inputs...)
			labels = append(labels, rec.Label)
		}
	}

	start := time.Now()
	err = fb.log.Append(recs...)
	n.metrics.feedbackAppendLat.Observe(time.Since(start).Seconds())
	n.metrics.feedbackLogBytes.Set(float64(fb.log.Size()))
	if err != nil {
		n.log.Error("feedback log append failed", "model", name, "err", err)
		if errors.Is(err, feedback.ErrFailed) || errors.Is(err, feedback.ErrClosed) {
			return 0, httpErr(http.StatusServiceUnavailable, "feedback log unavailable: %v", err)
		}
		return 0, fmt.Errorf("feedback log: %w", err)
	}
	ok = true

	byID := len(takens)
	if byID > 0 {
		n.metrics.feedbackExamples.WithLabelValues(name, "id").Add(float64(byID))
		n.metrics.rememberedRequests.WithLabelValues(name).Set(float64(kept.len()))
	}
	if len(recs) > byID {
		n.metrics.feedbackExamples.WithLabelValues(name, "inputs").Add(float64(len(recs) - byID))
	}
	for _, t := range takens {
		if t.entry.predicted >= 0 {
			fb.prequential(name, t.entry.version, t.entry.predicted == t.label)
		}
	}
	if !fb.cfg.Online.Disabled && len(labels) > 0 {
		fb.learnerFor(name).enqueue(fb, rows, labels, st.cls.dim)
	}
	return len(recs), nil
}

// decodeFeedback decodes a feedback body: one example or {"examples":
// [...]}. Unknown fields are errors.
func decodeFeedback(body []byte) ([]feedbackExample, error) {
	var b struct {
		feedbackExample
		Examples []feedbackExample `json:"examples,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, httpErr(http.StatusBadRequest, "feedback body: %v; want {\"inputs\": [...], \"label\": N}, {\"id\": \"...\", \"label\": N} or {\"examples\": [...]}", err)
	}
	if dec.More() {
		return nil, httpErr(http.StatusBadRequest, "feedback body: data after the JSON object")
	}
	single := b.Inputs != nil || b.ID != nil || b.Label != nil
	var out []feedbackExample
	switch {
	case b.Examples != nil && single:
		return nil, httpErr(http.StatusBadRequest, "feedback body: give one example (inputs or id, with label) or \"examples\", not both")
	case b.Examples != nil:
		if len(b.Examples) == 0 {
			return nil, httpErr(http.StatusBadRequest, "feedback body: \"examples\" is empty")
		}
		if len(b.Examples) > maxFeedbackExamples {
			return nil, httpErr(http.StatusRequestEntityTooLarge, "feedback body: %d examples, at most %d per request", len(b.Examples), maxFeedbackExamples)
		}
		out = b.Examples
	case single:
		out = []feedbackExample{b.feedbackExample}
	default:
		return nil, httpErr(http.StatusBadRequest, "feedback body: no example; want {\"inputs\": [...], \"label\": N}, {\"id\": \"...\", \"label\": N} or {\"examples\": [...]}")
	}
	for i, ex := range out {
		at := ""
		if len(out) > 1 || b.Examples != nil {
			at = fmt.Sprintf("example %d: ", i)
		}
		switch {
		case ex.Label == nil:
			return nil, httpErr(http.StatusBadRequest, "feedback body: %sno \"label\"", at)
		case (ex.Inputs != nil) == (ex.ID != nil):
			return nil, httpErr(http.StatusBadRequest, "feedback body: %sgive either \"inputs\" or \"id\"", at)
		case ex.ID != nil && *ex.ID == "":
			return nil, httpErr(http.StatusBadRequest, "feedback body: %s\"id\" is empty", at)
		}
	}
	return out, nil
}

// decodeInputs decodes an example's OIP input tensors and returns its one
// row of features.
func (fb *feedbackState) decodeInputs(v *version, c *classifier, raw json.RawMessage) ([]float32, error) {
	body := make([]byte, 0, len(raw)+12)
	body = append(append(append(body, `{"inputs":`...), raw...), '}')
	req, err := oip.DecodeRequest(body, -1, oip.Limits{MaxBodyBytes: fb.cfg.MaxBodyBytes + 16})
	if err != nil {
		return nil, err
	}
	if err := checkInputs(&v.manifest.Signature, req.Inputs); err != nil {
		return nil, err
	}
	in := &req.Inputs[0]
	if in.Shape[0] != 1 {
		return nil, fmt.Errorf("input %q has %d rows; an example is one row (send several as \"examples\")", in.Name, in.Shape[0])
	}
	row := make([]float32, c.dim)
	for i := range row {
		row[i] = math.Float32frombits(binary.LittleEndian.Uint32(in.Data[4*i:]))
		if math.IsNaN(float64(row[i])) || math.IsInf(float64(row[i]), 0) {
			return nil, fmt.Errorf("input %q feature %d is %v", in.Name, i, row[i])
		}
	}
	return row, nil
}

// preqCount is the prequential tally of one version.
type preqCount struct{ total, correct int64 }

// prequential counts a label for a request version served: test-then-
// train accuracy, each prediction judged by the label that arrives later.
func (fb *feedbackState) prequential(model, version string, correct bool) {
	fb.preqMu.Lock()
	key := [2]string{model, version}
	c := fb.preq[key]
	if c == nil {
		c = &preqCount{}
		fb.preq[key] = c
	}
	c.total++
	if correct {
		c.correct++
	}
	acc := float64(c.correct) / float64(c.total)
	fb.preqMu.Unlock()
	mt := fb.n.metrics
	mt.prequentialLabels.WithLabelValues(model, version).Inc()
	if correct {
		mt.prequentialCorrect.WithLabelValues(model, version).Inc()
	}
	mt.prequentialAcc.WithLabelValues(model, version).Set(acc)
}

// driftMonitor measures how far one version's recent inputs are from its
// baseline, feature by feature, with the population stability index
//
//	PSI = sum over bins of (actual - expected) * ln(actual / expected)
//
// (fractions below 1e-4 count as 1e-4). The baseline is the manifest's
// FeatureBaseline when it has one, else decile bins of the first
// DriftBaseline inputs the version sees. The window holds the bins of the
// last DriftWindow inputs; the PSI is recomputed every tenth of a window
// once it holds 100 inputs (or the whole window, when smaller).
type driftMonitor struct {
	fb             *feedbackState
	model, version string
	dim            int

	mu        sync.Mutex
	baseline  []models.FeatureBins // nil until known
	collect   []float32            // first inputs, while the baseline is built from them
	collected int
	need      int // inputs the baseline is built from
	ring      []uint8
	counts    [][]int32 // per feature, per bin
	head      int
	filled    int
	window    int
	since     int
	psi       []float64
	maxPSI    float64
	hasPSI    bool
	exported  map[int]bool
}

func newDriftMonitor(fb *feedbackState, v *version, dim int) *driftMonitor {
	m := &driftMonitor{fb: fb, model: v.manifest.Name, version: v.manifest.Version, dim: dim,
		window: fb.cfg.DriftWindow, need: fb.cfg.DriftBaseline, exported: map[int]bool{}}
	if b := v.manifest.Baseline; b != nil && len(b.Features) == dim {
		m.setBaseline(b.Features)
	}
	return m
}

func (m *driftMonitor) setBaseline(fs []models.FeatureBins) {
	m.baseline = fs
	m.collect = nil
	m.ring = make([]uint8, m.window*m.dim)
	m.counts = make([][]int32, m.dim)
	for i, f := range fs {
		m.counts[i] = make([]int32, len(f.Expected))
	}
	m.psi = make([]float64, m.dim)
}

// observe takes up to maxDriftRowsPerRequest rows of FP32 data.
func (m *driftMonitor) observe(data []byte, rows int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	row := make([]float32, m.dim)
	for r := range min(rows, maxDriftRowsPerRequest) {
		for i := range row {
			row[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*(r*m.dim+i):]))
		}
		if m.baseline == nil {
			m.collectRow(row)
		} else {
			m.push(row)
		}
	}
}

// collectRow keeps a row for the baseline and builds it once there are
// enough: per feature, bins at the deciles of the values seen.
func (m *driftMonitor) collectRow(row []float32) {
	if m.collect == nil {
		m.collect = make([]float32, 0, m.need*m.dim)
	}
	m.collect = append(m.collect, row...)
	m.collected++
	if m.collected < m.need {
		return
	}
	fs := make([]models.FeatureBins, m.dim)
	col := make([]float64, m.need)
	for f := range m.dim {
		for r := range m.need {
			col[r] = float64(m.collect[r*m.dim+f])
		}
		slices.Sort(col)
		var edges []float64
		for q := 1; q < driftBins; q++ {
			e := col[q*m.need/driftBins]
			if len(edges) == 0 || e > edges[len(edges)-1] {
				edges = append(edges, e)
			}
		}
		fb := models.FeatureBins{Edges: edges, Expected: make([]float64, len(edges)+1)}
		for _, x := range col {
			fb.Expected[fb.Bin(x)]++
		}
		for b := range fb.Expected {
			fb.Expected[b] /= float64(m.need)
		}
		fs[f] = fb
	}
	m.setBaseline(fs)
}

// push adds a row to the window, evicting the oldest when full.
func (m *driftMonitor) push(row []float32) {
	slot := m.ring[m.head*m.dim : (m.head+1)*m.dim]
	if m.filled == m.window {
		for f, b := range slot {
			m.counts[f][b]--
		}
	} else {
		m.filled++
	}
	for f, x := range row {
		b := m.baseline[f].Bin(float64(x))
		slot[f] = uint8(b)
		m.counts[f][b]++
	}
	m.head = (m.head + 1) % m.window
	m.since++
	minFill := min(100, m.window)
	if m.filled >= minFill && (!m.hasPSI || m.since >= max(1, m.window/10)) {
		m.compute()
	}
}

// compute recomputes every feature's PSI and exports the top ones.
func (m *driftMonitor) compute() {
	m.since = 0
	m.maxPSI = 0
	for f, bins := range m.baseline {
		var psi float64
		for b, e := range bins.Expected {
			a := max(float64(m.counts[f][b])/float64(m.filled), psiFloor)
			e = max(e, psiFloor)
			psi += (a - e) * math.Log(a/e)
		}
		m.psi[f] = psi
		m.maxPSI = max(m.maxPSI, psi)
	}
	m.hasPSI = true
	order := make([]int, m.dim)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return m.psi[order[i]] > m.psi[order[j]] })
	top := order[:min(driftExported, len(order))]
	mt := m.fb.n.metrics
	keep := map[int]bool{}
	for _, f := range top {
		keep[f] = true
		mt.featurePSI.WithLabelValues(m.model, m.version, strconv.Itoa(f)).Set(m.psi[f])
	}
	for f := range m.exported {
		if !keep[f] {
			mt.featurePSI.DeleteLabelValues(m.model, m.version, strconv.Itoa(f))
		}
	}
	m.exported = keep
	mt.driftPSIMax.WithLabelValues(m.model, m.version).Set(m.maxPSI)
}

// forget deletes the monitor's series.
func (m *driftMonitor) forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.fb.n.metrics
	for f := range m.exported {
		mt.featurePSI.DeleteLabelValues(m.model, m.version, strconv.Itoa(f))
	}
	m.exported = map[int]bool{}
	mt.driftPSIMax.DeleteLabelValues(m.model, m.version)
}

func (m *driftMonitor) max() (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maxPSI, m.hasPSI
}

// Drift returns the largest population stability index over the input
// features of the version of model that serves by default, against its
// baseline; ok is false when feedback is off, the model is not loaded or
// not a classifier, or there is no baseline or not enough inputs yet.
// Above 0.25 is commonly read as a significant shift, 0.1 to 0.25 as a
// moderate one.
func (n *Node) Drift(model string) (maxPSI float64, ok bool) {
	if n.fb == nil {
		return 0, false
	}
	v, err := n.models.lookup(model, "")
	if err != nil {
		return 0, false
	}
	st := n.fb.state(v)
	if st.drift == nil {
		return 0, false
	}
	return st.drift.max()
}

// learner holds the local copy of one model and trains it on feedback.
type learner struct {
	model string

	pendMu sync.Mutex
	pendX  []float32
	pendY  []int32
	pendW  int // features per pending row

	mu      sync.Mutex // the copy and its trainer
	digest  string     // of the version the copy started from
	base    string
	local   *onnx.Model
	trainer *federated.Trainer
	failed  string // digest that cannot be trained here
}

func (fb *feedbackState) learnerFor(model string) *learner {
	fb.learnMu.Lock()
	defer fb.learnMu.Unlock()
	l := fb.learners[model]
	if l == nil {
		l = &learner{model: model}
		fb.learners[model] = l
	}
	return l
}

// enqueue queues examples for training and wakes the loop; it never
// blocks on training. The oldest beyond MaxPending are dropped.
func (l *learner) enqueue(fb *feedbackState, x []float32, y []int32, width int) {
	l.pendMu.Lock()
	dropped := 0
	if width != l.pendW {
		dropped = len(l.pendY)
		l.pendX, l.pendY, l.pendW = l.pendX[:0], l.pendY[:0], width
	}
	l.pendX = append(l.pendX, x...)
	l.pendY = append(l.pendY, y...)
	if over := len(l.pendY) - fb.cfg.Online.MaxPending; over > 0 {
		dropped += over
		l.pendX = slices.Delete(l.pendX, 0, over*width)
		l.pendY = slices.Delete(l.pendY, 0, over)
	}
	l.pendMu.Unlock()
	if dropped > 0 {
		fb.n.metrics.onlineDropped.WithLabelValues(l.model).Add(float64(dropped))
	}
	select {
	case fb.wake <- struct{}{}:
	default:
	}
}

// next takes up to batch pending rows.
func (l *learner) next(batch int) (x []float32, y []int32, width int) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	k := min(batch, len(l.pendY))
	if k == 0 {
		return nil, nil, 0
	}
	x = slices.Clone(l.pendX[:k*l.pendW])
	y = slices.Clone(l.pendY[:k])
	l.pendX = slices.Delete(l.pendX, 0, k*l.pendW)
	l.pendY = slices.Delete(l.pendY, 0, k)
	return x, y, l.pendW
}

func (l *learner) pending() bool {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	return len(l.pendY) > 0
}

// syncLocked makes the local copy a copy of the version of the model that
// serves by default, unless it already started from it. l.mu is held.
func (fb *feedbackState) syncLocked(l *learner) error {
	v, err := fb.n.models.lookup(l.model, "")
	if err != nil {
		return err
	}
	digest := v.manifest.Digest
	if digest != "" && digest == l.digest {
		return nil
	}
	if digest != "" && digest == l.failed {
		return fmt.Errorf("model %q version %s cannot be trained at this node", l.model, v.manifest.Version)
	}
	m, err := fb.parseVersion(v)
	if err == nil {
		var tr *federated.Trainer
		tr, err = federated.NewTrainer(m, federated.SGDConfig{
			LR: fb.cfg.Online.LR, Momentum: fb.cfg.Online.Momentum,
			BatchSize: fb.cfg.Online.BatchSize, Epochs: 1, Seed: 1,
		})
		if err == nil {
			l.digest, l.base, l.local, l.trainer, l.failed = digest, v.manifest.Version, m, tr, ""
			return nil
		}
	}
	l.failed = digest
	fb.warnOnce("learn:"+digest, "no online learning for this version", "model", l.model, "version", v.manifest.Version, "err", err)
	return fmt.Errorf("model %q version %s cannot be trained at this node: %w", l.model, v.manifest.Version, err)
}

// parseVersion reads a version's model file (from the repository, or the
// blob store for a version the coordinator sent), checks its digest and
// parses it as a Petrel-written ONNX file.
func (fb *feedbackState) parseVersion(v *version) (*onnx.Model, error) {
	n := fb.n
	var b []byte
	if n.cfg.ModelRepository != "" && models.ValidName(v.manifest.Name) && models.ValidVersion(v.manifest.Version) {
		p := filepath.Join(n.cfg.ModelRepository, v.manifest.Name, v.manifest.Version, "model.onnx")
		if st, err := os.Stat(p); err == nil && st.Size() == v.bytes {
			if rb, err := os.ReadFile(p); err == nil && models.DigestBytes(rb) == v.manifest.Digest {
				b = rb
			}
		}
	}
	if b == nil && n.blobs != nil && v.manifest.Digest != "" {
		if bb, err := n.blobs.ReadAll(v.manifest.Digest); err == nil && models.DigestBytes(bb) == v.manifest.Digest {
			b = bb
		}
	}
	if b == nil {
		return nil, errors.New("the node does not keep this version's model file")
	}
	return onnx.Parse(b)
}

// step trains the local copy on one batch.
func (fb *feedbackState) step(l *learner, x []float32, y []int32, width int) {
	mt := fb.n.metrics
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := fb.syncLocked(l); err != nil || l.local.InSize() != width {
		mt.onlineDropped.WithLabelValues(l.model).Add(float64(len(y)))
		return
	}
	loss, err := l.trainer.Step(x, y, len(y), nil)
	if err != nil {
		// Diverged (or a batch the trainer refused): start again from
		// the served version.
		fb.n.log.Warn("feedback: online learning step failed; the local copy restarts from the served version", "model", l.model, "err", err)
		l.digest = ""
		mt.onlineDropped.WithLabelValues(l.model).Add(float64(len(y)))
		return
	}
	mt.onlineSteps.WithLabelValues(l.model).Inc()
	mt.onlineExamples.WithLabelValues(l.model).Add(float64(len(y)))
	mt.onlineLoss.WithLabelValues(l.model).Set(loss)
}

// train runs bounded work: up to onlineStepsPerWake steps per model, then
// wakes itself again if anything is left.
func (fb *feedbackState) train() {
	fb.learnMu.Lock()
	ls := slices.Collect(maps.Values(fb.learners))
	fb.learnMu.Unlock()
	more := false
	for _, l := range ls {
		for range onlineStepsPerWake {
			x, y, w := l.next(fb.cfg.Online.BatchSize)
			if len(y) == 0 {
				break
			}
			fb.step(l, x, y, w)
		}
		more = more || l.pending()
	}
	if more {
		select {
		case fb.wake <- struct{}{}:
		default:
		}
	}
}

// loop is the background goroutine: online learning, and every sweepEvery
// the sweep and the log's retention.
func (fb *feedbackState) loop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-fb.stop:
			return
		case <-fb.wake:
			fb.train()
		case <-t.C:
			fb.sweep()
			if err := fb.log.Prune(); err != nil {
				fb.warnOnce("prune", "retention failed", "err", err)
			}
			fb.n.metrics.feedbackLogBytes.Set(float64(fb.log.Size()))
		}
	}
}

// sweep forgets the state and series of versions and models that are no
// longer loaded.
func (fb *feedbackState) sweep() {
	loaded := map[*version]bool{}
	names := map[string]bool{}
	pairs := map[[2]string]bool{}
	for _, v := range fb.n.models.loadedVersions() {
		loaded[v] = true
		names[v.manifest.Name] = true
		pairs[[2]string{v.manifest.Name, v.manifest.Version}] = true
	}
	mt := fb.n.metrics
	fb.states.Range(func(k, val any) bool {
		if !loaded[k.(*version)] {
			fb.states.Delete(k)
			if d := val.(*verState).drift; d != nil {
				d.forget()
			}
		}
		return true
	})
	fb.keptMu.Lock()
	for name := range fb.kept {
		if !names[name] {
			delete(fb.kept, name)
			mt.rememberedRequests.DeleteLabelValues(name)
		}
	}
	fb.keptMu.Unlock()
	fb.preqMu.Lock()
	for key := range fb.preq {
		if !pairs[key] {
			delete(fb.preq, key)
			mt.prequentialLabels.DeleteLabelValues(key[0], key[1])
			mt.prequentialCorrect.DeleteLabelValues(key[0], key[1])
			mt.prequentialAcc.DeleteLabelValues(key[0], key[1])
		}
	}
	fb.preqMu.Unlock()
	fb.learnMu.Lock()
	for name := range fb.learners {
		if !names[name] {
			delete(fb.learners, name)
			for _, c := range []interface{ DeleteLabelValues(...string) bool }{mt.onlineSteps, mt.onlineExamples, mt.onlineDropped, mt.onlineLoss} {
				c.DeleteLabelValues(name)
			}
		}
	}
	fb.learnMu.Unlock()
}

// LocalModel returns a copy of the node's local copy of model (the served
// version's weights plus the online learning steps taken since) and the
// version it started from. ok is false when feedback is off, the model is
// not loaded, or its served version is not a Petrel-written ONNX file that
// this node keeps. A new served version resets the local copy to it.
func (n *Node) LocalModel(model string) (*onnx.Model, string, bool) {
	if n.fb == nil {
		return nil, "", false
	}
	if _, err := n.models.lookup(model, ""); err != nil {
		return nil, "", false
	}
	l := n.fb.learnerFor(model)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := n.fb.syncLocked(l); err != nil {
		return nil, "", false
	}
	return cloneModel(l.local), l.base, true
}

func cloneModel(m *onnx.Model) *onnx.Model {
	c := *m
	c.Layers = make([]onnx.Dense, len(m.Layers))
	for i, l := range m.Layers {
		c.Layers[i] = onnx.Dense{In: l.In, Out: l.Out, W: slices.Clone(l.W), B: slices.Clone(l.B)}
	}
	c.Metadata = maps.Clone(m.Metadata)
	return &c
}

// FeedbackDataset returns the newest max labelled examples of model from
// the durable feedback log (every one when max <= 0) as a data set for
// federated training: the rows whose width is the input width of the
// version that serves by default and whose labels it can output, oldest
// first. Classes is the version's number of classes (2 for a single
// probability output).
func (n *Node) FeedbackDataset(model string, max int) (*federated.Dataset, error) {
	if n.fb == nil {
		return nil, ErrFeedbackDisabled
	}
	v, err := n.models.lookup(model, "")
	if err != nil {
		return nil, err
	}
	st := n.fb.state(v)
	if st.cls.err != nil {
		return nil, fmt.Errorf("model %q version %s does not take feedback: %w", model, v.manifest.Version, st.cls.err)
	}
	recs, err := n.fb.log.Read(model, max)
	if err != nil {
		return nil, err
	}
	d := &federated.Dataset{Dim: st.cls.dim, Classes: st.cls.classes}
	for _, r := range recs {
		if len(r.Inputs) != d.Dim || int(r.Label) >= d.Classes {
			continue
		}
		d.X = append(d.X, r.Inputs...)
		d.Y = append(d.Y, r.Label)
	}
	d.N = len(d.Y)
	return d, nil
}
