package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of ProvisionOptions.
const (
	DefaultReplicas    = 1
	DefaultKVHistory   = 5
	DefaultAuditMaxAge = 90 * 24 * time.Hour
)

// ErrNotProvisioned is returned by Open when a bucket or stream the
// coordinator creates does not exist (yet).
var ErrNotProvisioned = errors.New("not provisioned by the coordinator yet")

// ProvisionOptions configures the buckets and the audit stream the
// coordinator creates. The zero value is valid: every zero field takes
// its documented default.
type ProvisionOptions struct {
	// Replicas of every bucket and stream in a JetStream cluster, 1-5;
	// 0 means DefaultReplicas.
	Replicas int
	// Storage of every bucket and stream; the zero value is file storage.
	Storage jetstream.StorageType
	// MaxArtifactBytes is the capacity of the artifacts object store, all
	// artifacts together; 0 means no limit of its own (the server's
	// JetStream store limit still applies).
	MaxArtifactBytes int64
	// KVHistory is how many revisions of each key the KV buckets keep,
	// 1-64; 0 means DefaultKVHistory.
	KVHistory int
	// AuditMaxAge is how long audit events are kept; 0 means
	// DefaultAuditMaxAge.
	AuditMaxAge time.Duration
	// AuditMaxBytes caps the audit stream's size (oldest events go
	// first); 0 means no limit of its own.
	AuditMaxBytes int64
}

// withDefaults fills zero fields and checks ranges.
func (o ProvisionOptions) withDefaults() (ProvisionOptions, error) {
	if o.Replicas == 0 {
		o.Replicas = DefaultReplicas
	}
	if o.KVHistory == 0 {
		o.KVHistory = DefaultKVHistory
	}
	if o.AuditMaxAge == 0 {
		o.AuditMaxAge = DefaultAuditMaxAge
	}
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("provision: replicas %d not in [1, 5]", o.Replicas)
	case o.Storage != jetstream.FileStorage && o.Storage != jetstream.MemoryStorage:
		return o, fmt.Errorf("provision: unknown storage type %d", o.Storage)
	case o.MaxArtifactBytes < 0:
		return o, fmt.Errorf("provision: negative artifact capacity %d", o.MaxArtifactBytes)
	case o.KVHistory < 1 || o.KVHistory > 64:
		return o, fmt.Errorf("provision: KV history %d not in [1, 64]", o.KVHistory)
	case o.AuditMaxAge < 0:
		return o, fmt.Errorf("provision: negative audit max age %v", o.AuditMaxAge)
	case o.AuditMaxBytes < 0:
		return o, fmt.Errorf("provision: negative audit size limit %d", o.AuditMaxBytes)
	}
	return o, nil
}

// Buckets are the JetStream buckets shared by the coordinator and the
// nodes, bound to one connection.
type Buckets struct {
	JS        jetstream.JetStream
	Artifacts jetstream.ObjectStore
	Registry  jetstream.KeyValue
	Desired   jetstream.KeyValue
	Rollouts  jetstream.KeyValue
	Names     Names
}

// Provision creates the buckets and the audit stream, or updates them to
// opts when they exist (the coordinator side; idempotent). Settings that
// JetStream cannot change in place, such as the storage type, make it
// fail with an error naming the bucket.
func Provision(ctx context.Context, nc *nats.Conn, names Names, opts ProvisionOptions) (*Buckets, error) {
	if nc == nil {
		return nil, errors.New("provision: nil connection")
	}
	if err := names.Validate(); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("provision: jetstream: %w", err)
	}
	b := &Buckets{JS: js, Names: names}

	artifactsMax := opts.MaxArtifactBytes
	if artifactsMax == 0 {
		artifactsMax = -1
	}
	b.Artifacts, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      names.Artifacts(),
		Description: "Petrel model artifacts, one object per sha256 digest",
		MaxBytes:    artifactsMax,
		Storage:     opts.Storage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("provision object store %s: %w", names.Artifacts(), err)
	}
	kv := func(bucket, desc string) (jetstream.KeyValue, error) {
		h, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       bucket,
			Description:  desc,
			MaxValueSize: MaxMessageBytes,
			History:      uint8(opts.KVHistory),
			Storage:      opts.Storage,
			Replicas:     opts.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("provision KV bucket %s: %w", bucket, err)
		}
		return h, nil
	}
	if b.Registry, err = kv(names.Registry(), "Petrel signed manifests by <model>.<version>"); err != nil {
		return nil, err
	}
	if b.Desired, err = kv(names.Desired(), "Petrel desired state by model"); err != nil {
		return nil, err
	}
	if b.Rollouts, err = kv(names.Rollouts(), "Petrel rollout state by model"); err != nil {
		return nil, err
	}
	auditMax := opts.AuditMaxBytes
	if auditMax == 0 {
		auditMax = -1
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        names.AuditStream(),
		Description: "Petrel audit trail",
		Subjects:    []string{names.AuditSubject(">")},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      opts.AuditMaxAge,
		MaxBytes:    auditMax,
		MaxMsgs:     -1,
		MaxMsgSize:  MaxMessageBytes,
		Storage:     opts.Storage,
		Replicas:    opts.Replicas,
		DenyDelete:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", names.AuditStream(), err)
	}
	return b, nil
}

// Open binds to the buckets the coordinator provisioned (the node side).
// A missing bucket or stream yields an error naming it that wraps
// ErrNotProvisioned; a node retries later.
func Open(ctx context.Context, nc *nats.Conn, names Names) (*Buckets, error) {
	if nc == nil {
		return nil, errors.New("open buckets: nil connection")
	}
	if err := names.Validate(); err != nil {
		return nil, fmt.Errorf("open buckets: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open buckets: jetstream: %w", err)
	}
	b := &Buckets{JS: js, Names: names}
	missing := func(kind, name string, err error) error {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("open %s %s: %w", kind, name, ErrNotProvisioned)
		}
		return fmt.Errorf("open %s %s: %w", kind, name, err)
	}
	if b.Artifacts, err = js.ObjectStore(ctx, names.Artifacts()); err != nil {
		return nil, missing("object store", names.Artifacts(), err)
	}
	for _, kv := range []struct {
		name string
		dst  *jetstream.KeyValue
	}{
		{names.Registry(), &b.Registry},
		{names.Desired(), &b.Desired},
		{names.Rollouts(), &b.Rollouts},
	} {
		if *kv.dst, err = js.KeyValue(ctx, kv.name); err != nil {
			return nil, missing("KV bucket", kv.name, err)
		}
	}
	if _, err = js.Stream(ctx, names.AuditStream()); err != nil {
		return nil, missing("stream", names.AuditStream(), err)
	}
	return b, nil
}
