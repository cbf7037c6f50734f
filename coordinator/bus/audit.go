package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limits of ReadAudit.
const (
	// DefaultAuditLimit is how many events ReadAudit returns when the
	// filter's Limit is 0.
	DefaultAuditLimit = 1000
	// MaxAuditLimit is the largest Limit ReadAudit accepts.
	MaxAuditLimit = 100000
	// auditClockSkew is how much earlier than Since ReadAudit starts
	// reading the stream, so that an event stored a little before its own
	// Time (publisher clock ahead of the server's) is still found.
	auditClockSkew = 5 * time.Minute
	// auditBatch is how many messages one fetch asks for.
	auditBatch = 256
)

// PublishAudit appends ev to the audit stream and returns once JetStream
// has acknowledged it, that is, stored it. A zero ev.Time is set to now;
// ev.Seq is ignored (the stream assigns it). The event must validate.
func PublishAudit(ctx context.Context, js jetstream.JetStream, names Names, ev AuditEvent) error {
	if js == nil {
		return errors.New("publish audit event: nil JetStream")
	}
	if err := names.Validate(); err != nil {
		return fmt.Errorf("publish audit event: %w", err)
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Seq = 0
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("publish audit event: %w", err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish audit event %s: encode: %w", ev.Kind, err)
	}
	if len(b) > MaxMessageBytes {
		return fmt.Errorf("publish audit event %s: %d bytes: %w (limit %d)", ev.Kind, len(b), ErrTooLarge, MaxMessageBytes)
	}
	if _, err := js.Publish(ctx, names.AuditSubject(ev.Kind), b, jetstream.WithExpectStream(names.AuditStream())); err != nil {
		return fmt.Errorf("publish audit event %s to %s: %w", ev.Kind, names.AuditStream(), err)
	}
	return nil
}

// AuditFilter selects audit events. Empty fields match everything.
type AuditFilter struct {
	// Kind matches the event kind exactly (filtered by the server).
	Kind string
	// Model and Actor match exactly.
	Model, Actor string
	// Since keeps events whose Time is at or after it.
	Since time.Time
	// Limit keeps the last Limit matching events; 0 means
	// DefaultAuditLimit, and at most MaxAuditLimit.
	Limit int
	// Logger is told about stored messages that are not valid events
	// (they are skipped); nil means they are skipped silently.
	Logger *slog.Logger
}

// ReadAudit returns the audit events that match filter, oldest first,
// each with its stream sequence in Seq; with more than filter.Limit
// matches, the newest Limit. Messages in the stream that do not decode or
// validate are skipped and counted in a warning to filter.Logger.
func ReadAudit(ctx context.Context, js jetstream.JetStream, names Names, filter AuditFilter) ([]AuditEvent, error) {
	if js == nil {
		return nil, errors.New("read audit: nil JetStream")
	}
	if err := names.Validate(); err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	limit := filter.Limit
	switch {
	case limit == 0:
		limit = DefaultAuditLimit
	case limit < 0 || limit > MaxAuditLimit:
		return nil, fmt.Errorf("read audit: limit %d not in [0, %d]", filter.Limit, MaxAuditLimit)
	}
	subject := names.AuditSubject(">")
	if filter.Kind != "" {
		if !ValidKind(filter.Kind) {
			return nil, fmt.Errorf("read audit: kind %q: want dot-separated tokens of letters, digits, '_', '-'", filter.Kind)
		}
		subject = names.AuditSubject(filter.Kind)
	}
	cfg := jetstream.ConsumerConfig{
		Description:       "petrel audit reader",
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		FilterSubject:     subject,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if !filter.Since.IsZero() {
		start := filter.Since.Add(-auditClockSkew)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	cons, err := js.CreateConsumer(ctx, names.AuditStream(), cfg)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("read audit: stream %s: %w", names.AuditStream(), ErrNotProvisioned)
		}
		return nil, fmt.Errorf("read audit: consumer on %s: %w", names.AuditStream(), err)
	}
	defer func() {
		// Best effort; the inactivity threshold removes it otherwise.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, names.AuditStream(), cons.CachedInfo().Name)
	}()

	var (
		out       []AuditEvent
		skipped   int
		firstSkip error
	)
	pending := cons.CachedInfo().NumPending
	prefix := names.AuditSubject("")
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read audit: %w", err)
		}
		batch, err := cons.FetchNoWait(auditBatch)
		if err != nil {
			return nil, fmt.Errorf("read audit: fetch from %s: %w", names.AuditStream(), err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read audit: message metadata: %w", err)
			}
			pending = md.NumPending
			ev, err := DecodeAuditEvent(msg.Data())
			if err == nil && ev.Kind != strings.TrimPrefix(msg.Subject(), prefix) {
				err = fmt.Errorf("kind %q stored on subject %q", ev.Kind, msg.Subject())
			}
			if err != nil {
				skipped++
				if firstSkip == nil {
					firstSkip = fmt.Errorf("sequence %d: %w", md.Sequence.Stream, err)
				}
				continue
			}
			if !matchAudit(ev, filter) {
				continue
			}
			ev.Seq = md.Sequence.Stream
			out = append(out, *ev)
			if len(out) >= 2*limit {
				out = append(out[:0], out[len(out)-limit:]...)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read audit: fetch from %s: %w", names.AuditStream(), err)
		}
		if got == 0 {
			break // the stream lost messages to its limits while we read
		}
	}
	if skipped > 0 && filter.Logger != nil {
		filter.Logger.Warn("audit stream holds messages that are not valid events; skipped them",
			"stream", names.AuditStream(), "skipped", skipped, "first", firstSkip)
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func matchAudit(ev *AuditEvent, f AuditFilter) bool {
	return (f.Model == "" || ev.Model == f.Model) &&
		(f.Actor == "" || ev.Actor == f.Actor) &&
		(f.Since.IsZero() || !ev.Time.Before(f.Since))
}
