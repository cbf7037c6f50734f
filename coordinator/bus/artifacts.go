package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors of the artifact helpers.
var (
	// ErrInvalidDigest is returned for a digest that is not
	// "sha256:<64 lower-case hex digits>".
	ErrInvalidDigest = errors.New("invalid digest")
	// ErrDigestMismatch is returned when bytes do not hash to the digest
	// they are stored or offered under.
	ErrDigestMismatch = errors.New("content does not match digest")
)

// objectName is the object name of an artifact: its digest's hex.
func objectName(digest string) (string, error) {
	if !ValidDigest(digest) {
		return "", fmt.Errorf("%w %q: want sha256:<64 lower-case hex digits>", ErrInvalidDigest, digest)
	}
	return digest[len("sha256:"):], nil
}

// PutArtifact stores what r yields under digest, verifying on the way
// that it hashes to digest: on a mismatch nothing is stored and the error
// wraps ErrDigestMismatch. When the artifact is already there, r is not
// read and its stored size is returned.
func (b *Buckets) PutArtifact(ctx context.Context, digest string, r io.Reader) (int64, error) {
	name, err := objectName(digest)
	if err != nil {
		return 0, err
	}
	if r == nil {
		return 0, fmt.Errorf("put artifact %s: nil reader", digest)
	}
	info, err := b.Artifacts.GetInfo(ctx, name)
	switch {
	case err == nil:
		return int64(info.Size), nil
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return 0, fmt.Errorf("put artifact %s: %w", digest, err)
	}
	want, _ := hex.DecodeString(name)
	vr := &verifyingReader{r: r, h: sha256.New(), want: want}
	info, err = b.Artifacts.Put(ctx, jetstream.ObjectMeta{Name: name}, vr)
	if err != nil {
		return 0, fmt.Errorf("put artifact %s: %w", digest, err)
	}
	return int64(info.Size), nil
}

// verifyingReader hashes what it reads and, at the end, turns io.EOF into
// an ErrDigestMismatch error when the hash is not the expected one. The
// object store abandons (and purges) a put whose reader fails, so bytes
// that do not match are never committed under the digest's name.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want []byte
	n    int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := v.h.Sum(nil); !bytes.Equal(got, v.want) {
			return n, fmt.Errorf("%w: %d bytes hash to sha256:%x", ErrDigestMismatch, v.n, got)
		}
	}
	return n, err
}

// GetArtifact returns the artifact stored under digest, at most maxBytes
// long (maxBytes <= 0 means no limit), after checking that it hashes to
// digest. It never returns bytes that do not match: a mismatch is an
// error wrapping ErrDigestMismatch. A missing artifact is ErrNotFound; a
// larger one ErrTooLarge.
func (b *Buckets) GetArtifact(ctx context.Context, digest string, maxBytes int64) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := b.CopyArtifact(ctx, digest, &buf, maxBytes); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CopyArtifact streams the artifact stored under digest to w and returns
// how many bytes it wrote, with the same checks and errors as
// GetArtifact. The digest can only be checked at the end, so on any error
// w may already hold some or all of the (unverified) bytes: write to a
// temporary file and keep it only when the error is nil.
func (b *Buckets) CopyArtifact(ctx context.Context, digest string, w io.Writer, maxBytes int64) (int64, error) {
	name, err := objectName(digest)
	if err != nil {
		return 0, err
	}
	if w == nil {
		return 0, fmt.Errorf("copy artifact %s: nil writer", digest)
	}
	res, err := b.Artifacts.Get(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return 0, fmt.Errorf("get artifact %s: %w", digest, ErrNotFound)
		}
		return 0, fmt.Errorf("get artifact %s: %w", digest, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return 0, fmt.Errorf("get artifact %s: %w", digest, err)
	}
	if maxBytes > 0 && info.Size > uint64(maxBytes) {
		return 0, fmt.Errorf("get artifact %s: %d bytes: %w (limit %d)", digest, info.Size, ErrTooLarge, maxBytes)
	}
	if g, ok := w.(interface{ Grow(int) }); ok && info.Size < 1<<30 {
		g.Grow(int(info.Size))
	}
	var src io.Reader = res
	if maxBytes > 0 {
		src = io.LimitReader(res, maxBytes+1)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), src)
	if err != nil {
		if errors.Is(err, jetstream.ErrDigestMismatch) {
			return n, fmt.Errorf("get artifact %s: %w: %w", digest, ErrDigestMismatch, err)
		}
		return n, fmt.Errorf("get artifact %s: %w", digest, err)
	}
	if maxBytes > 0 && n > maxBytes {
		return n, fmt.Errorf("get artifact %s: more than %d bytes: %w", digest, maxBytes, ErrTooLarge)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return n, fmt.Errorf("get artifact %s: %w: stored bytes hash to %s", digest, ErrDigestMismatch, got)
	}
	return n, nil
}

// ArtifactExists reports whether an artifact is stored under digest.
func (b *Buckets) ArtifactExists(ctx context.Context, digest string) (bool, error) {
	name, err := objectName(digest)
	if err != nil {
		return false, err
	}
	_, err = b.Artifacts.GetInfo(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("artifact %s: %w", digest, err)
	}
}

// DeleteArtifact removes the artifact stored under digest. Deleting a
// missing artifact is not an error.
func (b *Buckets) DeleteArtifact(ctx context.Context, digest string) error {
	name, err := objectName(digest)
	if err != nil {
		return err
	}
	if err := b.Artifacts.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete artifact %s: %w", digest, err)
	}
	return nil
}
