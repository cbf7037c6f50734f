package node_test

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
)

// Labels, in a model's config.json, that make slowLoader wrap the model's
// session.
const (
	// labelGated: every execution waits until the test opens the gate
	// (slowLoader.close), or until its context ends.
	labelGated = "test.gated"
	// labelDelay: every execution waits that many milliseconds first, or
	// until its context ends.
	labelDelay = "test.delay_ms"
	// labelHold: every execution takes that many milliseconds whatever its
	// context says, as an ONNX Runtime run goes on until it reaches a
	// point where it checks for termination, and then checks that nobody
	// changed its input data meanwhile (slowLoader.modified).
	labelHold = "test.hold_ms"
)

// slowLoader loads every model into the real ONNX Runtime and wraps the
// sessions of labelled models (above) so that their executions take as
// long as a test needs, on any machine. The scheduling and shutdown tests
// use it: their subject is how the HTTP layer and the scheduler map a busy
// runtime (queueing, 429, 504, draining, unloading), not the runtime's
// speed, and a real model slow enough on a fast machine would make the
// suite slow everywhere. The outputs still come from ONNX Runtime.
type slowLoader struct {
	started  atomic.Int64 // executions of gated or delayed models begun
	running  atomic.Int64 // executions of gated or delayed models waiting
	modified atomic.Int64 // held executions whose input data changed under them
	held     atomic.Int64 // held executions finished

	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (l *slowLoader) option() node.Option { return node.WithSessionLoader(l.load) }

// shut makes executions of gated models wait until open is called.
func (l *slowLoader) shut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate == nil {
		l.gate = make(chan struct{})
	}
}

// open lets every waiting and future execution of gated models run.
func (l *slowLoader) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
}

func (l *slowLoader) load(b []byte, mc *node.ModelConfig) (models.Session, error) {
	s, err := ort.Load(b, ort.DefaultOptions())
	if err != nil {
		return nil, err
	}
	if ms, _ := strconv.Atoi(mc.Labels[labelHold]); ms > 0 {
		return &holdSession{Session: s, hold: time.Duration(ms) * time.Millisecond, l: l}, nil
	}
	ms, _ := strconv.Atoi(mc.Labels[labelDelay])
	if ms <= 0 && mc.Labels[labelGated] == "" {
		return s, nil
	}
	return &slowSession{Session: s, delay: time.Duration(ms) * time.Millisecond, l: l}, nil
}

// slowSession waits for its delay, or for the gate when delay is 0.
type slowSession struct {
	*ort.Session
	delay time.Duration
	l     *slowLoader
}

func (s *slowSession) Run(ctx context.Context, in []models.Tensor, out []string) ([]models.Tensor, error) {
	s.l.started.Add(1)
	s.l.running.Add(1)
	defer s.l.running.Add(-1)
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return s.Session.Run(ctx, in, out)
	}
	s.l.mu.Lock()
	gate := s.l.gate
	s.l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Session.Run(ctx, in, out)
}

// holdSession runs for hold, ignoring its context, and counts changes of
// its inputs meanwhile.
type holdSession struct {
	*ort.Session
	hold time.Duration
	l    *slowLoader
}

func (s *holdSession) Run(ctx context.Context, in []models.Tensor, out []string) ([]models.Tensor, error) {
	defer s.l.held.Add(1)
	snap := make([][]byte, len(in))
	for i := range in {
		snap[i] = bytes.Clone(in[i].Data)
	}
	time.Sleep(s.hold)
	for i := range in {
		if !bytes.Equal(snap[i], in[i].Data) {
			s.l.modified.Add(1)
			break
		}
	}
	return s.Session.Run(ctx, in, out)
}
