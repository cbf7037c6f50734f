package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/petrel-mesh/petrel/coordinator"
	"github.com/petrel-mesh/petrel/coordinator/bus"
	"github.com/petrel-mesh/petrel/coordinator/rollout"
	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node"
	"github.com/petrel-mesh/petrel/node/meshtls"
)

// devRegion is one simulated region of the local mesh.
type devRegion struct {
	name     string
	lat, lon float64
}

var devRegions = []devRegion{
	{"eu-west", 48.85, 2.35},   // Paris
	{"us-east", 40.71, -74.01}, // New York
	{"ap-south", 1.35, 103.82}, // Singapore
	{"sa-east", -23.55, -46.63},
	{"af-south", -33.92, 18.42},
}

// devOptions configure `petrel dev`.
type devOptions struct {
	dir      string
	api      string
	natsPort int
	basePort int
	nodes    int
	traffic  float64 // requests a second of background traffic
	interval time.Duration
	log      *slog.Logger
}

// devMesh is a running all-in-one mesh.
type devMesh struct {
	opts   devOptions
	coord  *coordinator.Coordinator
	nodes  []*node.Node
	token  string
	caFile string
	model  string
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func runDev(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel dev", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var o devOptions
	fs.StringVar(&o.dir, "dir", ".cache/dev", "state directory (emptied at start: the dev mesh is ephemeral)")
	fs.StringVar(&o.api, "listen", "127.0.0.1:7070", "coordinator management API address")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "embedded NATS port (0 picks one)")
	fs.IntVar(&o.basePort, "base-port", 8001, "first node's port (TCP and UDP); the others follow (0 picks free ports)")
	fs.IntVar(&o.nodes, "nodes", 3, "number of edge nodes, each in its own simulated region (3-5)")
	fs.Float64Var(&o.traffic, "traffic", 20, "background requests a second, so that the rollout has figures to judge (0: none)")
	fs.DurationVar(&o.interval, "step-interval", 10*time.Second, "time at each rollout step")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so (default: $PETREL_ORT_LIB, then the setup cache)")
	logLevel := fs.String("log-level", "warn", "debug|info|warn|error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.nodes < 3 || o.nodes > len(devRegions) || o.traffic < 0 {
		fmt.Fprintf(e.stderr, "petrel dev: want --nodes 3-%d and --traffic >= 0, no arguments\n", len(devRegions))
		return 2
	}
	log, err := newLogger(e, *logLevel, false)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel dev: %v\n", err)
		return 2
	}
	o.log = log
	if _, err := ort.Init(*lib); err != nil {
		fmt.Fprintf(e.stderr, "petrel dev: %v\n", err)
		return 1
	}
	fmt.Fprintln(e.stdout, "Starting the local Petrel mesh: a coordinator with embedded NATS and", o.nodes, "nodes ...")
	d, err := startDev(ctx, o, e.stdout)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel dev: %v\n", err)
		return 1
	}
	d.printExamples(e.stdout)
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nStopping the local mesh ...")
	d.close()
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sampleVersion builds a version of the sample MLP (64 -> 128 -> 16,
// softmax) with one golden example from the pure-Go forward pass.
func sampleVersion(seed uint64) ([]byte, []models.Golden, error) {
	sizes := samples[0].sizes
	m := onnx.NewMLP(sizes, onnx.Softmax).RandomInit(seed)
	m.Name = "mlp-small"
	b, err := m.MarshalONNX()
	if err != nil {
		return nil, nil, err
	}
	in := make([]float32, sizes[0])
	for i := range in {
		in[i] = float32(i%7)/7 - 0.4
	}
	out, err := m.Forward(in, 1)
	if err != nil {
		return nil, nil, err
	}
	inJSON, _ := json.Marshal(in)
	outJSON, _ := json.Marshal(out)
	return b, []models.Golden{{
		Inputs:    []models.GoldenTensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, int64(sizes[0])}, Data: inJSON}},
		Outputs:   []models.GoldenTensor{{Name: m.Signature().Outputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(sizes[len(sizes)-1])}, Data: outJSON}},
		Tolerance: 1e-5,
	}}, nil
}

func startDev(ctx context.Context, o devOptions, out io.Writer) (_ *devMesh, err error) {
	if err := os.RemoveAll(o.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, err
	}
	d := &devMesh{opts: o, token: randomHex(24), model: "mlp-small"}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	toks, err := coordinator.NewTokens([]coordinator.Token{{Name: "dev-admin", Secret: d.token, Scopes: []string{coordinator.ScopeAdmin}}})
	if err != nil {
		return nil, err
	}
	tb, _ := json.MarshalIndent([]coordinator.Token{{Name: "dev-admin", Secret: d.token, Scopes: []string{coordinator.ScopeAdmin}}}, "", "  ")
	if err := os.WriteFile(filepath.Join(o.dir, "tokens.json"), tb, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.dir, "token"), []byte(d.token+"\n"), 0o600); err != nil {
		return nil, err
	}
	nodePass := randomHex(16)
	caDir := filepath.Join(o.dir, "ca")
	if _, err := meshtls.NewDevCA(caDir, 30*24*time.Hour); err != nil {
		return nil, err
	}
	d.caFile = filepath.Join(caDir, "ca.pem")
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)

	cl := o.log.With("component", "coordinator")
	c, err := coordinator.New(coordinator.Config{
		DataDir: filepath.Join(o.dir, "coordinator"), Listen: o.api, Tokens: toks, Logger: cl,
		Embedded: bus.EmbeddedOptions{Host: "127.0.0.1", Port: o.natsPort, Users: []bus.User{{Name: "petrel-node", Password: nodePass}}},
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	d.coord = c
	if err := models.WritePublicKey(filepath.Join(o.dir, "coordinator.pub"), c.PublicKey()); err != nil {
		return nil, err
	}

	var seeds []string
	for i := 0; i < o.nodes; i++ {
		r := devRegions[i]
		cfg := node.DefaultConfig()
		cfg.ID = "edge-" + r.name
		port := 0
		if o.basePort > 0 {
			port = o.basePort + i
		}
		cfg.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		cfg.PlainTCP = true
		cfg.Logger = o.log.With("component", "node")
		cfg.ShutdownTimeout = 5 * time.Second
		cfg.Mesh = node.MeshConfig{
			Enabled: true, Role: "edge", Region: r.name, Lat: r.lat, Lon: r.lon, HasLocation: true,
			GossipBind: "127.0.0.1:0", Profile: "local", Seeds: seeds, GossipKeys: [][]byte{gossipKey},
			TLSDir: caDir, LazyLoad: true, BlobDir: filepath.Join(o.dir, cfg.ID, "blobs"),
		}
		cfg.Control = node.ControlConfig{
			NATS:           bus.ConnOptions{URL: c.NATSURL(), User: "petrel-node", Password: nodePass},
			CoordinatorKey: c.PublicKey(),
			Labels:         map[string]string{"tier": "edge"},
		}
		n, err := node.New(cfg)
		if err != nil {
			return nil, err
		}
		if err := n.Start(ctx); err != nil {
			return nil, err
		}
		d.nodes = append(d.nodes, n)
		if i == 0 {
			seeds = []string{n.GossipAddr()}
		}
		fmt.Fprintf(out, "  node %-12s region %-9s http://%s (HTTP/1.1, h2c; HTTP/3 on udp)\n", cfg.ID, r.name, n.Addr())
	}

	// Version 1 serves everywhere; version 2 then rolls out as a canary.
	v1, g1, err := sampleVersion(1)
	if err != nil {
		return nil, err
	}
	if _, err := c.Push(ctx, coordinator.PushRequest{Name: d.model, Version: "1", Model: v1, Golden: g1, Actor: "dev-admin",
		Labels: map[string]string{"family": "mlp", "purpose": "sample"}}); err != nil {
		return nil, fmt.Errorf("push version 1: %w", err)
	}
	if _, err := c.Deploy(ctx, d.model, "1", nil, "dev-admin"); err != nil {
		return nil, fmt.Errorf("deploy version 1: %w", err)
	}
	fmt.Fprintf(out, "  pushed %s version 1 (validated, signed) and deployed it; waiting for the nodes ...\n", d.model)
	if err := d.waitReady(ctx, "1", 60*time.Second); err != nil {
		return nil, err
	}
	v2, g2, err := sampleVersion(2)
	if err != nil {
		return nil, err
	}
	if _, err := c.Push(ctx, coordinator.PushRequest{Name: d.model, Version: "2", Model: v2, Golden: g2, Actor: "dev-admin",
		Labels: map[string]string{"family": "mlp", "purpose": "sample"}}); err != nil {
		return nil, fmt.Errorf("push version 2: %w", err)
	}
	ro, err := c.StartRollout(ctx, rollout.Spec{Model: d.model, To: "2", Steps: []float64{10, 50, 100}, Interval: o.interval,
		MaxErrorRate: 0.05, MaxP99: 500 * time.Millisecond, MinRequests: 20, Actor: "dev-admin"})
	if err != nil {
		return nil, fmt.Errorf("start the rollout of version 2: %w", err)
	}
	fmt.Fprintf(out, "  pushed version 2 and started rollout %s: 10%% -> 50%% -> 100%%, %s a step\n", ro.ID, o.interval)
	if o.traffic > 0 {
		tctx, cancel := context.WithCancel(context.Background())
		d.stop = cancel
		d.wg.Go(func() { d.generate(tctx) })
	}
	return d, nil
}

// waitReady waits until every node reports the version ready.
func (d *devMesh) waitReady(ctx context.Context, ver string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := 0
		var reasons []string
		for _, n := range d.coord.Nodes() {
			for _, m := range n.Models {
				if m.Model == d.model && m.Version == ver {
					if m.State == node.StateReady {
						ready++
					} else if m.Reason != "" {
						reasons = append(reasons, n.Node+": "+m.Reason)
					}
				}
			}
		}
		if ready >= len(d.nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s version %s is ready on %d of %d nodes after %s %v", d.model, ver, ready, len(d.nodes), timeout, reasons)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// generate sends light traffic with sticky request keys to every node.
func (d *devMesh) generate(ctx context.Context) {
	client := &http.Client{Timeout: 5 * time.Second}
	in := make([]string, 64)
	for i := range in {
		in[i] = "0.25"
	}
	body := []byte(`{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(in, ",") + `]}]}`)
	t := time.NewTicker(time.Duration(float64(time.Second) / d.opts.traffic))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := d.nodes[i%len(d.nodes)]
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+n.Addr()+"/v2/models/"+d.model+"/infer", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(node.DefaultRequestKeyHeader, fmt.Sprintf("user-%d", mrand.IntN(1000)))
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

func (d *devMesh) printExamples(w io.Writer) {
	api := d.coord.URL()
	n0 := "http://" + d.nodes[0].Addr()
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe Petrel mesh is up.\n  coordinator  %s (NATS %s)\n  token        %s (also in %s)\n", api, d.coord.NATSURL(), d.token, filepath.Join(d.opts.dir, "token"))
	fmt.Fprintf(&b, "\nIn another terminal:\n\n  export PETREL_COORDINATOR=%s PETREL_TOKEN=%s\n\n", api, d.token)
	b.WriteString("  # the nearest nodes for a client in Paris, and a redirect for one that cannot choose\n")
	fmt.Fprintf(&b, "  bin/petrel route %s --lat 48.85 --lon 2.35\n", d.model)
	fmt.Fprintf(&b, "  curl -s -H \"Authorization: Bearer $PETREL_TOKEN\" '%s/v1/route?model=%s&lat=1.3&lon=103.8'\n", api, d.model)
	b.WriteString("\n  # inference over HTTP/1.1 (a request key keeps you on one version during the rollout)\n")
	fmt.Fprintf(&b, "  curl -s %s/v2/models/%s/infer -H 'Petrel-Request-Key: alice' -H 'Content-Type: application/json' \\\n    -d '{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[%s]}]}'\n",
		n0, d.model, strings.TrimSuffix(strings.Repeat("0.5,", 64), ","))
	b.WriteString("\n  # and over HTTP/3 (QUIC; the mesh's development CA signs the nodes' certificates)\n")
	fmt.Fprintf(&b, "  bin/petrel infer --url https://%s --protocol h3 --ca %s --model %s --input input:FP32:1x64:random\n", d.nodes[0].Addr(), d.caFile, d.model)
	b.WriteString("\n  # watch the canary: 10% -> 50% -> 100% of traffic, rolled back by itself if errors or p99 cross the bounds\n")
	fmt.Fprintf(&b, "  bin/petrel rollout status %s --watch\n", d.model)
	b.WriteString("\n  # push a version of your own (validated: it loads, signature compatible, golden outputs, latency) and roll it out\n")
	fmt.Fprintf(&b, "  bin/petrel model sample --repo /tmp/petrel-models && bin/petrel model push /tmp/petrel-models/mlp-small/1/model.onnx --name %s --version 3\n", d.model)
	fmt.Fprintf(&b, "  bin/petrel rollout start %s --version 3 --steps 1,5,10,50,100 --interval 20s --max-error-rate 0.01 --max-p99 200ms\n", d.model)
	b.WriteString("\n  # what happened, and who did it\n")
	fmt.Fprintf(&b, "  bin/petrel model show %s\n  bin/petrel audit --model %s\n", d.model, d.model)
	b.WriteString("\nPress Ctrl-C to stop.\n\n")
	fmt.Fprint(w, b.String())
	if f, ok := w.(*os.File); ok {
		f.Sync()
	}
}

func (d *devMesh) close() {
	if d.stop != nil {
		d.stop()
	}
	d.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range d.nodes {
		wg.Go(func() { n.Shutdown(ctx) })
	}
	wg.Wait()
	if d.coord != nil {
		d.coord.Close()
	}
}
