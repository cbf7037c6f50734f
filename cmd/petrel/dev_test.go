package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models/ort"
)

// TestDevMesh runs the main job, `petrel dev`, as the README's first
// command does (on free ports): a coordinator with embedded NATS, three
// gossiping nodes in different regions, the sample model deployed, and
// version 2 rolled out under the background traffic until promoted.
func TestDevMesh(t *testing.T) {
	if _, err := ort.Init(""); err != nil {
		t.Fatalf("this test needs the ONNX Runtime shared library (make setup): %v", err)
	}
	var out bytes.Buffer
	o := devOptions{dir: t.TempDir(), api: "127.0.0.1:0", natsPort: 0, basePort: 0, nodes: 3, traffic: 60, interval: time.Second,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d, err := startDev(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("startDev: %v\n%s", err, out.String())
	}
	defer d.close()
	if len(d.nodes) != 3 {
		t.Fatalf("%d nodes", len(d.nodes))
	}
	regions := map[string]bool{}
	for _, n := range d.coord.Nodes() {
		regions[n.Region] = true
		if n.HTTPURL == "" || !n.Healthy {
			t.Fatalf("node %+v", n)
		}
	}
	if len(regions) != 3 {
		t.Fatalf("regions %v", regions)
	}
	for _, n := range d.nodes {
		if peers := len(n.Mesh().Peers()); peers != 2 {
			t.Fatalf("node %s sees %d gossip peers, want 2", n.Addr(), peers)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := d.coord.Rollout(d.model)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == rollout.StatePromoted {
			break
		}
		if r.Terminal() || time.Now().After(deadline) {
			t.Fatalf("rollout %s: %s", r.State, r.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ex bytes.Buffer
	d.printExamples(&ex)
	for _, want := range []string{"petrel route mlp-small", "--protocol h3", "rollout status mlp-small", "model push", "PETREL_TOKEN=" + d.token} {
		if !strings.Contains(ex.String(), want) {
			t.Errorf("examples lack %q:\n%s", want, ex.String())
		}
	}
}
