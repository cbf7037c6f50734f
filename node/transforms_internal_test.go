package node

import (
	"context"
	"strings"
	"testing"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/wasm/wasmtest"
)

// TestCompileTransformsVerifies: a module whose bytes are not what the
// signed manifest says is never compiled.
func TestCompileTransformsVerifies(t *testing.T) {
	features := wasmtest.BuildExample(t, "features")
	topk := wasmtest.BuildExample(t, "topk")
	cfg := DefaultConfig()
	cfg.ModelRepository = t.TempDir()
	cfg.TransformCacheDir = t.TempDir()
	n := &Node{cfg: cfg}
	ctx := context.Background()
	defer n.closeTransformRuntime(ctx)
	spec := func(b []byte) *models.Transform {
		return &models.Transform{Digest: models.DigestBytes(b), Size: int64(len(b))}
	}
	for _, tc := range []struct {
		name      string
		spec      models.Transforms
		pre, post []byte
		want      string
	}{
		{"tampered pre", models.Transforms{Pre: spec(features)}, topk, nil, "pre transform: "},
		{"tampered post", models.Transforms{Post: spec(topk)}, nil, append([]byte{}, features[:len(topk)]...), "does not match"},
		{"short", models.Transforms{Pre: spec(features)}, features[:10], nil, "manifest says"},
		{"no modules", models.Transforms{}, nil, nil, "neither pre nor post"},
		{"bad grant", models.Transforms{Pre: &models.Transform{Digest: models.DigestBytes(features), Size: int64(len(features)), Grants: []string{"net"}}}, features, nil, "grant"},
	} {
		ts, err := n.compileTransforms(ctx, &tc.spec, tc.pre, tc.post)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
		ts.close(ctx)
	}
	ts, err := n.compileTransforms(ctx, &models.Transforms{Pre: spec(features), Post: spec(topk)}, features, topk)
	if err != nil || ts.pre == nil || ts.post == nil {
		t.Fatalf("valid modules: %v", err)
	}
	ts.close(ctx)
}
