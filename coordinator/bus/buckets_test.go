package bus

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestProvisionIdempotent(t *testing.T) {
	_, nc, b := provisioned(t)
	ctx := testCtx(t)
	// A value survives a second provisioning with other settings.
	if _, err := b.Desired.Put(ctx, "m", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	b2, err := Provision(ctx, nc, Names{}, ProvisionOptions{KVHistory: 10, AuditMaxAge: time.Hour, MaxArtifactBytes: 64 << 20})
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if _, err := Provision(ctx, nc, Names{}, ProvisionOptions{KVHistory: 10, AuditMaxAge: time.Hour, MaxArtifactBytes: 64 << 20}); err != nil {
		t.Fatalf("third Provision: %v", err)
	}
	if _, err := b2.Desired.Get(ctx, "m"); err != nil {
		t.Fatalf("value lost by re-provisioning: %v", err)
	}
	st, err := b2.Desired.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 10 {
		t.Errorf("history = %d, want 10 after update", st.History())
	}
	s, err := b2.JS.Stream(ctx, b2.Names.AuditStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != time.Hour || cfg.Storage != jetstream.FileStorage || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "petrel.audit.>" {
		t.Errorf("audit stream config %+v", cfg)
	}
	ost, err := b2.Artifacts.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ost.Storage() != jetstream.FileStorage {
		t.Errorf("artifacts storage %v", ost.Storage())
	}
}

func TestProvisionDefaults(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	st, err := b.Registry.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != DefaultKVHistory {
		t.Errorf("history = %d, want %d", st.History(), DefaultKVHistory)
	}
	s, err := b.JS.Stream(ctx, "PETREL_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != DefaultAuditMaxAge {
		t.Errorf("audit max age %v, want %v", got, DefaultAuditMaxAge)
	}
}

func TestProvisionOptionsInvalid(t *testing.T) {
	_, nc, _ := provisioned(t)
	ctx := testCtx(t)
	for _, o := range []ProvisionOptions{
		{Replicas: 6}, {Replicas: -1}, {KVHistory: 65}, {AuditMaxAge: -time.Second},
		{MaxArtifactBytes: -1}, {AuditMaxBytes: -1}, {Storage: 7},
	} {
		if _, err := Provision(ctx, nc, Names{}, o); err == nil {
			t.Errorf("Provision(%+v) succeeded", o)
		}
	}
	if _, err := Provision(ctx, nc, Names{Prefix: "a.b"}, ProvisionOptions{}); err == nil {
		t.Error("Provision with a dotted prefix succeeded")
	}
	if _, err := Provision(ctx, nil, Names{}, ProvisionOptions{}); err == nil {
		t.Error("Provision with a nil connection succeeded")
	}
}

func TestOpenNotProvisioned(t *testing.T) {
	e := startServer(t, t.TempDir(), 0)
	nc := connect(t, e.ClientURL())
	ctx := testCtx(t)
	names := Names{Prefix: "t1"}
	_, err := Open(ctx, nc, names)
	if !errors.Is(err, ErrNotProvisioned) || !strings.Contains(err.Error(), "t1-artifacts") {
		t.Fatalf("Open before Provision: %v, want ErrNotProvisioned naming t1-artifacts", err)
	}
	// Partly provisioned: the first missing bucket is named.
	js, _ := jetstream.New(nc)
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: names.Artifacts()}); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, nc, names)
	if !errors.Is(err, ErrNotProvisioned) || !strings.Contains(err.Error(), "t1-registry") {
		t.Fatalf("Open when partly provisioned: %v, want ErrNotProvisioned naming t1-registry", err)
	}
	if _, err := Provision(ctx, nc, names, ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, nc, names)
	if err != nil {
		t.Fatalf("Open after Provision: %v", err)
	}
	if b.Desired.Bucket() != "t1-desired" || b.Rollouts.Bucket() != "t1-rollouts" || b.Registry.Bucket() != "t1-registry" {
		t.Errorf("bound to %s %s %s", b.Desired.Bucket(), b.Rollouts.Bucket(), b.Registry.Bucket())
	}
	// Nodes publish audit events through Open's buckets too.
	if err := PublishAudit(ctx, b.JS, names, AuditEvent{Kind: "push", Actor: "t"}); err != nil {
		t.Fatal(err)
	}
}

func TestArtifacts(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	data := bytes.Repeat([]byte("petrel model bytes "), 20000) // ~380 KB, several chunks
	digest := sha(data)

	if ok, err := b.ArtifactExists(ctx, digest); err != nil || ok {
		t.Fatalf("ArtifactExists before put = %v, %v", ok, err)
	}
	if _, err := b.GetArtifact(ctx, digest, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetArtifact before put: %v, want ErrNotFound", err)
	}
	n, err := b.PutArtifact(ctx, digest, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("PutArtifact = %d, %v", n, err)
	}
	info1, err := b.Artifacts.GetInfo(ctx, digest[7:])
	if err != nil {
		t.Fatalf("object not stored under the digest hex: %v", err)
	}
	// Idempotent: a second put neither reads the reader nor rewrites.
	n, err = b.PutArtifact(ctx, digest, iotest.ErrReader(errors.New("must not be read")))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("second PutArtifact = %d, %v", n, err)
	}
	info2, _ := b.Artifacts.GetInfo(ctx, digest[7:])
	if info2.NUID != info1.NUID {
		t.Error("second PutArtifact rewrote the object")
	}
	if ok, err := b.ArtifactExists(ctx, digest); err != nil || !ok {
		t.Fatalf("ArtifactExists after put = %v, %v", ok, err)
	}
	got, err := b.GetArtifact(ctx, digest, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetArtifact: %d bytes, %v", len(got), err)
	}
	if _, err := b.GetArtifact(ctx, digest, int64(len(data))-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("GetArtifact over limit: %v, want ErrTooLarge", err)
	}
	var sink bytes.Buffer
	if n, err := b.CopyArtifact(ctx, digest, &sink, 0); err != nil || n != int64(len(data)) || !bytes.Equal(sink.Bytes(), data) {
		t.Fatalf("CopyArtifact = %d, %v", n, err)
	}
	if err := b.DeleteArtifact(ctx, digest); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteArtifact(ctx, digest); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if ok, _ := b.ArtifactExists(ctx, digest); ok {
		t.Fatal("artifact still exists after delete")
	}
	if _, err := b.GetArtifact(ctx, digest, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetArtifact after delete: %v, want ErrNotFound", err)
	}
	// Put again after a delete.
	if _, err := b.PutArtifact(ctx, digest, bytes.NewReader(data)); err != nil {
		t.Fatalf("PutArtifact after delete: %v", err)
	}
	if got, err := b.GetArtifact(ctx, digest, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetArtifact after re-put: %v", err)
	}
}

func TestArtifactDigestMismatch(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	good, bad := []byte("the real model"), []byte("something else")
	digest := sha(good)

	// Offering bytes that do not match stores nothing.
	if _, err := b.PutArtifact(ctx, digest, bytes.NewReader(bad)); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("PutArtifact with wrong bytes: %v, want ErrDigestMismatch", err)
	}
	if ok, err := b.ArtifactExists(ctx, digest); err != nil || ok {
		t.Fatalf("after a mismatched put, exists = %v, %v", ok, err)
	}
	// A reader failing midway stores nothing either.
	failing := io.MultiReader(bytes.NewReader(good[:4]), iotest.ErrReader(errors.New("disk gone")))
	if _, err := b.PutArtifact(ctx, digest, failing); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("PutArtifact with failing reader: %v", err)
	}
	if ok, _ := b.ArtifactExists(ctx, digest); ok {
		t.Fatal("after a failed put, the artifact exists")
	}
	// ... and leaves no chunks behind.
	if st, err := b.Artifacts.Status(ctx); err != nil || st.Size() != 0 {
		t.Fatalf("after failed puts the bucket holds %d bytes (%v)", st.Size(), err)
	}

	// Bytes stored under the wrong name behind our back are never returned.
	if _, err := b.Artifacts.PutBytes(ctx, digest[7:], bad); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetArtifact(ctx, digest, 0)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("GetArtifact of corrupt object: %v, want ErrDigestMismatch", err)
	}
	if got != nil {
		t.Fatal("GetArtifact returned bytes with a mismatch")
	}
	var sink bytes.Buffer
	if n, err := b.CopyArtifact(ctx, digest, &sink, 0); !errors.Is(err, ErrDigestMismatch) || n != int64(len(bad)) {
		t.Fatalf("CopyArtifact of corrupt object = %d, %v; want %d bytes and ErrDigestMismatch", n, err, len(bad))
	}
}

func TestArtifactInvalidDigest(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	for _, d := range []string{
		"", "sha256:", "sha256:abc", "md5:" + strings.Repeat("a", 32),
		"sha256:" + strings.Repeat("A", 64), strings.Repeat("a", 64),
		"sha256:" + strings.Repeat("a", 63) + "/", "sha256:" + strings.Repeat("a", 65),
	} {
		if _, err := b.PutArtifact(ctx, d, strings.NewReader("x")); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("PutArtifact(%q): %v", d, err)
		}
		if _, err := b.GetArtifact(ctx, d, 0); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("GetArtifact(%q): %v", d, err)
		}
		if _, err := b.ArtifactExists(ctx, d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ArtifactExists(%q): %v", d, err)
		}
		if err := b.DeleteArtifact(ctx, d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("DeleteArtifact(%q): %v", d, err)
		}
	}
}

func TestKVJSON(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	d := validDesired()

	var got Desired
	if _, err := GetJSON(ctx, b.Desired, "resnet", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetJSON of missing key: %v, want ErrNotFound", err)
	}
	// Create only.
	rev1, err := UpdateJSON(ctx, b.Desired, "resnet", &d, 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := UpdateJSON(ctx, b.Desired, "resnet", &d, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	// Update at the right revision.
	d.Versions[0].Weight, d.Versions[1].Weight = 50, 50
	rev2, err := UpdateJSON(ctx, b.Desired, "resnet", &d, rev1)
	if err != nil || rev2 <= rev1 {
		t.Fatalf("update at %d: rev %d, %v", rev1, rev2, err)
	}
	// A writer still at rev1 loses.
	if _, err := UpdateJSON(ctx, b.Desired, "resnet", &d, rev1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	rev, err := GetJSON(ctx, b.Desired, "resnet", &got)
	if err != nil || rev != rev2 || got.Versions[0].Weight != 50 {
		t.Fatalf("GetJSON = rev %d %+v, %v", rev, got, err)
	}
	// PutJSON overwrites whatever is there.
	rev3, err := PutJSON(ctx, b.Desired, "resnet", &d)
	if err != nil || rev3 <= rev2 {
		t.Fatalf("PutJSON: %d, %v", rev3, err)
	}
	// Invalid values are not written.
	bad := d
	bad.Versions = []DesiredVersion{{Version: "1", Digest: digestA, Weight: 30}}
	if _, err := PutJSON(ctx, b.Desired, "resnet", &bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutJSON(invalid): %v, want ErrInvalid", err)
	}
	if _, err := UpdateJSON(ctx, b.Desired, "resnet", &bad, rev3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("UpdateJSON(invalid): %v, want ErrInvalid", err)
	}
	// Invalid stored values are reported, not returned.
	if _, err := b.Desired.Put(ctx, "broken", []byte(`{"model":"x","versions":[{"version":"1"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := GetJSON(ctx, b.Desired, "broken", &got); !errors.Is(err, ErrInvalid) {
		t.Fatalf("GetJSON(invalid stored): %v, want ErrInvalid", err)
	}
	if _, err := b.Desired.Put(ctx, "garbage", []byte(`{{{`)); err != nil {
		t.Fatal(err)
	}
	if _, err := GetJSON(ctx, b.Desired, "garbage", &got); !errors.Is(err, ErrInvalid) {
		t.Fatalf("GetJSON(garbage): %v, want ErrInvalid", err)
	}
	// Deleted keys are not found; creating again works.
	if err := b.Desired.Delete(ctx, "resnet"); err != nil {
		t.Fatal(err)
	}
	if _, err := GetJSON(ctx, b.Desired, "resnet", &got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetJSON after delete: %v, want ErrNotFound", err)
	}
	if _, err := UpdateJSON(ctx, b.Desired, "resnet", &d, 0); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	// Values without a Validate method are stored as they are.
	if _, err := PutJSON(ctx, b.Rollouts, "r.1", map[string]int{"step": 2}); err != nil {
		t.Fatal(err)
	}
	var m map[string]int
	if _, err := GetJSON(ctx, b.Rollouts, "r.1", &m); err != nil || m["step"] != 2 {
		t.Fatalf("GetJSON(map) = %v, %v", m, err)
	}
	// Too large.
	huge := map[string]string{"x": strings.Repeat("y", MaxMessageBytes)}
	if _, err := PutJSON(ctx, b.Rollouts, "big", huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("PutJSON(huge): %v, want ErrTooLarge", err)
	}
}

func TestKVKeys(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	good := []string{"a", "resnet.1", "A-b_c=d/e.f", strings.Repeat("k", maxKeyLen)}
	bad := []string{"", ".a", "a.", "a..b", "a b", "a*", "a>", "ü", "a\n", strings.Repeat("k", maxKeyLen+1)}
	for _, k := range good {
		if !ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
	for _, k := range bad {
		if ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
		v := map[string]int{}
		if _, err := PutJSON(ctx, b.Rollouts, k, v); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PutJSON(%q): %v, want ErrInvalidKey", k, err)
		}
		if _, err := UpdateJSON(ctx, b.Rollouts, k, v, 0); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("UpdateJSON(%q): %v, want ErrInvalidKey", k, err)
		}
		if _, err := GetJSON(ctx, b.Rollouts, k, &v); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("GetJSON(%q): %v, want ErrInvalidKey", k, err)
		}
	}
}
