package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors of the KV helpers.
var (
	// ErrNotFound is returned for a key (or artifact) that does not exist
	// or was deleted.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned by UpdateJSON when the key's revision is not
	// the expected one (or, creating, when the key exists).
	ErrConflict = errors.New("revision conflict")
	// ErrInvalidKey is returned for a key NATS KV cannot store.
	ErrInvalidKey = errors.New("invalid key")
)

// maxKeyLen bounds KV keys (they become part of a subject).
const maxKeyLen = 1024

var kvKeyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// ValidKey reports whether key can be a NATS KV key: letters, digits and
// "-/_=.", at most 1024 bytes, not starting or ending with '.', without
// "..".
func ValidKey(key string) bool {
	if key == "" || len(key) > maxKeyLen || key[0] == '.' || key[len(key)-1] == '.' {
		return false
	}
	for i := 1; i < len(key); i++ {
		if key[i] == '.' && key[i-1] == '.' {
			return false
		}
	}
	return kvKeyRE.MatchString(key)
}

func checkKey(bucket, key string) error {
	if !ValidKey(key) {
		return fmt.Errorf("%s: key %q: %w (want letters, digits, \"-/_=.\", no leading, trailing or double dot)", bucket, key, ErrInvalidKey)
	}
	return nil
}

// marshalValue encodes v, validating it first when it has a Validate
// method, and checks the result fits in a KV value.
func marshalValue(bucket, key string, v any) ([]byte, error) {
	if val, ok := v.(validator); ok {
		if err := val.Validate(); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", bucket, key, err)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: encode: %w", bucket, key, err)
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%s/%s: %d bytes: %w (limit %d)", bucket, key, len(b), ErrTooLarge, MaxMessageBytes)
	}
	return b, nil
}

// PutJSON stores v as JSON under key, whatever is there, and returns the
// new revision. A v with a Validate method is validated first.
func PutJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	if err := checkKey(kv.Bucket(), key); err != nil {
		return 0, err
	}
	b, err := marshalValue(kv.Bucket(), key, v)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Put(ctx, key, b)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", kv.Bucket(), key, err)
	}
	return rev, nil
}

// UpdateJSON stores v as JSON under key only if the key's latest revision
// is lastRev (optimistic concurrency); lastRev 0 means the key must not
// exist (or be deleted). Otherwise it fails with an error wrapping
// ErrConflict, and the caller re-reads and retries. It returns the new
// revision. A v with a Validate method is validated first.
func UpdateJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any, lastRev uint64) (uint64, error) {
	if err := checkKey(kv.Bucket(), key); err != nil {
		return 0, err
	}
	b, err := marshalValue(kv.Bucket(), key, v)
	if err != nil {
		return 0, err
	}
	var rev uint64
	if lastRev == 0 {
		rev, err = kv.Create(ctx, key, b)
	} else {
		rev, err = kv.Update(ctx, key, b, lastRev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("update %s/%s at revision %d: %w", kv.Bucket(), key, lastRev, ErrConflict)
		}
		return 0, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, err)
	}
	return rev, nil
}

// GetJSON decodes the latest value of key into v and returns its
// revision. A missing or deleted key is ErrNotFound. When v has a
// Validate method the decoded value is validated, and a value that fails
// is an error wrapping ErrInvalid.
func GetJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	if err := checkKey(kv.Bucket(), key); err != nil {
		return 0, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return 0, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, ErrNotFound)
		}
		return 0, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("get %s/%s at revision %d: %w: %w", kv.Bucket(), key, e.Revision(), ErrInvalid, err)
	}
	if val, ok := v.(validator); ok {
		if err := val.Validate(); err != nil {
			return 0, fmt.Errorf("get %s/%s at revision %d: %w", kv.Bucket(), key, e.Revision(), err)
		}
	}
	return e.Revision(), nil
}
