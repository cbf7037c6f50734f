package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Timing of WatchKV.
const (
	// watchRetryMin and watchRetryMax bound the wait between attempts to
	// (re)create a watcher that failed to start; it doubles each time.
	watchRetryMin = 250 * time.Millisecond
	watchRetryMax = 5 * time.Second
	// watchCreateTimeout bounds one attempt to create a watcher (the
	// consumer request may otherwise wait out a disconnection).
	watchCreateTimeout = 10 * time.Second
	// watchDrainTimeout bounds the wait for a stopped watcher's channel to
	// close.
	watchDrainTimeout = 10 * time.Second
)

// WatchConfig configures WatchKV. Conn, KV and OnUpdate are required.
//
// The callbacks run one at a time on WatchKV's goroutine, in the order
// the bucket recorded the changes; they must not block for long (the
// watcher buffers a few hundred entries, then the server's flow control
// holds the rest).
type WatchConfig[T any] struct {
	// Conn is the connection KV was bound on; WatchKV listens to its
	// status to re-create the watcher after a reconnect.
	Conn *nats.Conn
	// KV is the bucket to watch.
	KV jetstream.KeyValue
	// Keys are subject filters ("model.*", "a.>"); none means every key.
	Keys []string
	// Validate checks a decoded value; a value that fails is dropped.
	// When nil and *T has a Validate() error method, that is used.
	Validate func(*T) error
	// OnUpdate receives each key's latest valid value and its revision.
	OnUpdate func(key string, val *T, rev uint64)
	// OnDelete is told that a key previously given to OnUpdate was
	// deleted or purged, or no longer exists after a resync. Optional.
	OnDelete func(key string)
	// OnSynced is called each time a (re-created) watcher has delivered
	// every key's current value: after it, the callbacks' view matches
	// the bucket as of that moment. Optional.
	OnSynced func()
	// OnInvalid is told about each value that does not decode or
	// validate (it is also logged and then dropped). Optional.
	OnInvalid func(key string, rev uint64, err error)
	// Logger receives watcher events; nil discards them.
	Logger *slog.Logger
}

func (c *WatchConfig[T]) validate() error {
	switch {
	case c.Conn == nil:
		return errors.New("watch KV: no connection")
	case c.KV == nil:
		return errors.New("watch KV: no bucket")
	case c.OnUpdate == nil:
		return fmt.Errorf("watch %s: no OnUpdate callback", c.KV.Bucket())
	}
	for _, k := range c.Keys {
		if k == "" {
			return fmt.Errorf("watch %s: empty key filter", c.KV.Bucket())
		}
	}
	return nil
}

// WatchKV delivers the JSON values of a KV bucket to cfg's callbacks
// until ctx is done, then returns nil once everything it started has
// stopped. It returns an error at once for an invalid cfg, and later only
// when the connection is closed for good.
//
// Delivery works in rounds. Each round creates a watcher that first
// delivers the current value of every key (values that do not decode
// into T or fail validation are logged and dropped, leaving the previous
// value in force), then OnSynced, then every change as it happens.
// A round ends, and a new one starts, when the connection reconnects
// (the server may have restarted and lost the watcher's consumer), or
// when the watcher stops on its own; a watcher that cannot be created is
// retried with backoff. A new round re-delivers current values, so
// delivery is at least once and the callbacks must be idempotent; keys
// that disappeared between rounds get OnDelete. Whatever happens on the
// way, the callbacks converge on the bucket's content.
func WatchKV[T any](ctx context.Context, cfg WatchConfig[T]) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bucket := cfg.KV.Bucket()
	log = log.With("component", "kv-watch", "bucket", bucket)
	validate := cfg.Validate
	if validate == nil {
		if _, ok := any(new(T)).(validator); ok {
			validate = func(v *T) error { return any(v).(validator).Validate() }
		}
	}
	st := &watchState[T]{
		known:     map[string]struct{}{},
		validate:  validate,
		onUpdate:  cfg.OnUpdate,
		onDelete:  cfg.OnDelete,
		onSynced:  cfg.OnSynced,
		onInvalid: cfg.OnInvalid,
		log:       log,
	}

	status := cfg.Conn.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer cfg.Conn.RemoveStatusListener(status)

	wait := watchRetryMin
	for {
		if ctx.Err() != nil {
			return nil
		}
		if cfg.Conn.IsClosed() {
			return fmt.Errorf("watch %s: %w", bucket, nats.ErrConnectionClosed)
		}
		w, stop, err := startWatch(ctx, cfg.KV, cfg.Keys)
		if err != nil {
			log.Warn("cannot start KV watcher; retrying", "err", err, "in", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case s := <-status:
				t.Stop()
				if s == nats.CLOSED {
					return fmt.Errorf("watch %s: %w", bucket, nats.ErrConnectionClosed)
				}
			case <-t.C:
			}
			wait = min(2*wait, watchRetryMax)
			continue
		}
		wait = watchRetryMin
		st.beginRound()
		reason := st.run(ctx, w.Updates(), status)
		stop(log)
		switch reason {
		case endCtx:
			return nil
		case endClosed:
			return fmt.Errorf("watch %s: %w", bucket, nats.ErrConnectionClosed)
		case endReconnected:
			log.Info("reconnected; re-creating KV watcher")
		case endWatcherClosed:
			log.Warn("KV watcher stopped; re-creating it")
			// Do not spin if it keeps stopping at once.
			t := time.NewTimer(watchRetryMin)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// startWatch creates a watcher whose lifetime is bounded by its own
// context, so that stopping it leaves nothing behind, and returns it with
// the function that stops it and waits for its channel to close.
func startWatch(ctx context.Context, kv jetstream.KeyValue, keys []string) (jetstream.KeyWatcher, func(*slog.Logger), error) {
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(watchCreateTimeout, cancel)
	w, err := kv.WatchFiltered(wctx, append([]string(nil), keys...))
	timedOut := !timer.Stop()
	stop := func(log *slog.Logger) {
		_ = w.Stop()
		cancel()
		// The library closes the channel once its delivery goroutine has
		// finished, which may be blocked handing us an entry: drain.
		t := time.NewTimer(watchDrainTimeout)
		defer t.Stop()
		for {
			select {
			case _, ok := <-w.Updates():
				if !ok {
					return
				}
			case <-t.C:
				log.Warn("KV watcher did not stop in time; draining it in the background")
				go func() {
					for range w.Updates() {
					}
				}()
				return
			}
		}
	}
	switch {
	case err != nil:
		cancel()
		return nil, nil, err
	case timedOut:
		stop(slog.New(slog.DiscardHandler))
		return nil, nil, fmt.Errorf("creating the watcher took more than %v", watchCreateTimeout)
	}
	return w, stop, nil
}

// roundEnd says why a watch round ended.
type roundEnd int

const (
	endCtx roundEnd = iota
	endClosed
	endReconnected
	endWatcherClosed
)

// watchState is what WatchKV remembers across rounds: the keys it has
// given to OnUpdate and not deleted since, and, during a round's initial
// delivery, the keys that round has seen.
type watchState[T any] struct {
	known map[string]struct{}
	seen  map[string]struct{} // non-nil until the round's initial delivery ends

	validate  func(*T) error
	onUpdate  func(string, *T, uint64)
	onDelete  func(string)
	onSynced  func()
	onInvalid func(string, uint64, error)
	log       *slog.Logger
}

// run feeds one watcher's entries to the state until the round ends.
func (s *watchState[T]) run(ctx context.Context, updates <-chan jetstream.KeyValueEntry, status <-chan nats.Status) roundEnd {
	for {
		select {
		case <-ctx.Done():
			return endCtx
		case st := <-status:
			if st == nats.CLOSED {
				return endClosed
			}
			return endReconnected
		case e, ok := <-updates:
			if !ok {
				return endWatcherClosed
			}
			if e == nil {
				s.synced()
				continue
			}
			s.entry(e.Key(), e.Revision(), e.Operation(), e.Value())
		}
	}
}

// beginRound starts tracking which keys the new watcher delivers.
func (s *watchState[T]) beginRound() { s.seen = map[string]struct{}{} }

// entry handles one entry of the bucket.
func (s *watchState[T]) entry(key string, rev uint64, op jetstream.KeyValueOp, value []byte) {
	if op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
		if s.seen != nil {
			delete(s.seen, key)
		}
		s.forget(key)
		return
	}
	if s.seen != nil {
		s.seen[key] = struct{}{}
	}
	v, err := s.decode(value)
	if err != nil {
		s.log.Warn("dropping invalid KV value", "key", key, "revision", rev, "err", err)
		if s.onInvalid != nil {
			s.onInvalid(key, rev, err)
		}
		return
	}
	s.known[key] = struct{}{}
	s.onUpdate(key, v, rev)
}

// synced ends a round's initial delivery: keys known from earlier rounds
// that the round did not deliver no longer exist.
func (s *watchState[T]) synced() {
	if s.seen != nil {
		for key := range s.known {
			if _, ok := s.seen[key]; !ok {
				s.forget(key)
			}
		}
		s.seen = nil
	}
	if s.onSynced != nil {
		s.onSynced()
	}
}

func (s *watchState[T]) forget(key string) {
	if _, ok := s.known[key]; !ok {
		return
	}
	delete(s.known, key)
	if s.onDelete != nil {
		s.onDelete(key)
	}
}

func (s *watchState[T]) decode(value []byte) (*T, error) {
	if len(value) > MaxMessageBytes {
		return nil, fmt.Errorf("%d bytes: %w (limit %d)", len(value), ErrTooLarge, MaxMessageBytes)
	}
	v := new(T)
	if err := json.Unmarshal(value, v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if s.validate != nil {
		if err := s.validate(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}
