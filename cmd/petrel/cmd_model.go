package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/onnx"
	"github.com/petrel-mesh/petrel/models/ort"
)

func runModel(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: petrel model push|push-pipeline|list|show|rm|deploy|shadow|inspect|sample [flags]\n"+
			"  (petrel model inspect FILE | petrel model sample --repo DIR [--large]; 'petrel model <subcommand> -h' for flags)")
		return 2
	}
	switch args[0] {
	case "push":
		return runModelPush(ctx, e, args[1:])
	case "push-pipeline":
		return runModelPushPipeline(ctx, e, args[1:])
	case "list":
		return runModelList(ctx, e, args[1:])
	case "show":
		return runModelShow(ctx, e, args[1:])
	case "rm":
		return runModelRm(ctx, e, args[1:])
	case "deploy":
		return runModelDeploy(ctx, e, args[1:])
	case "shadow":
		return runModelShadow(ctx, e, args[1:])
	case "inspect":
		return runModelInspect(ctx, e, args[1:])
	case "sample":
		return runModelSample(ctx, e, args[1:])
	}
	fmt.Fprintf(e.stderr, "petrel model: unknown subcommand %q (push, list, show, rm, deploy, shadow, inspect, sample)\n", args[0])
	return 2
}

func runModelInspect(_ context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel model inspect", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	lib := fs.String("ort-lib", "", "path of libonnxruntime.so")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "usage: petrel model inspect [--json] FILE")
		return 2
	}
	path := fs.Arg(0)
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel model inspect: %v\n", err)
		return 1
	}
	if _, err := ort.Init(*lib); err != nil {
		fmt.Fprintf(e.stderr, "petrel model inspect: %v\n", err)
		return 1
	}
	sig, err := ort.Inspect(b)
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel model inspect: %s is not a valid ONNX model: %v\n", path, err)
		return 1
	}
	man := models.Manifest{
		Name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), Format: models.FormatONNX,
		Digest: models.DigestBytes(b), Signature: sig,
	}
	if *asJSON {
		out, _ := json.MarshalIndent(man, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
		return 0
	}
	fmt.Fprintf(e.stdout, "file:    %s (%d bytes)\ndigest:  %s\nformat:  onnx\n", path, len(b), man.Digest)
	for _, sec := range []struct {
		title string
		specs []models.TensorSpec
	}{{"inputs", sig.Inputs}, {"outputs", sig.Outputs}} {
		fmt.Fprintf(e.stdout, "%s:\n", sec.title)
		for _, s := range sec.specs {
			fmt.Fprintf(e.stdout, "  %-20s %-6s %v\n", s.Name, s.DataType, s.Shape)
		}
	}
	return 0
}

// sampleModel is one model that `petrel model sample` writes.
type sampleModel struct {
	name   string
	sizes  []int
	config string
	seed   uint64
}

var samples = []sampleModel{
	// The small MLP of the foundation benchmarks: 64 -> 128 -> 16.
	{"mlp-small", []int{64, 128, 16}, `{"max_batch_size": 64, "max_queue_size": 4096, "response_cache": false, "labels": {"family": "mlp", "purpose": "sample"}}`, 1},
}

// largeSample is the compute-heavy MLP of the batching benchmark.
var largeSample = sampleModel{"mlp-large", []int{1024, 4096, 1024}, `{"max_batch_size": 64, "max_queue_size": 4096, "labels": {"family": "mlp", "purpose": "benchmark"}}`, 2}

func runModelSample(_ context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel model sample", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	repo := fs.String("repo", "", "model repository directory to write into")
	large := fs.Bool("large", false, "also write mlp-large (1024 -> 4096 -> 1024, 32 MB)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *repo == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "usage: petrel model sample --repo DIR [--large]")
		return 2
	}
	list := samples
	if *large {
		list = append(list[:len(list):len(list)], largeSample)
	}
	for _, s := range list {
		path, err := writeSample(*repo, s)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel model sample: %v\n", err)
			return 1
		}
		fmt.Fprintf(e.stdout, "wrote %s (%s MLP, softmax output)\n", path, joinInts(s.sizes))
	}
	return 0
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, "->")
}

// writeSample writes <repo>/<name>/1/model.onnx and config.json with a
// golden example computed by the pure-Go forward pass, so that loading
// the model also proves ONNX Runtime agrees with it.
func writeSample(repo string, s sampleModel) (string, error) {
	m := onnx.NewMLP(s.sizes, onnx.Softmax).RandomInit(s.seed)
	m.Name = s.name
	dir := filepath.Join(repo, s.name, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "model.onnx")
	if err := m.WriteFile(path); err != nil {
		return "", err
	}
	in := make([]float32, s.sizes[0])
	for i := range in {
		in[i] = float32(i%7)/7 - 0.4
	}
	out, err := m.Forward(in, 1)
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(s.config), &cfg); err != nil {
		return "", err
	}
	inJSON, _ := json.Marshal(in)
	outJSON, _ := json.Marshal(out)
	cfg["golden"] = []models.Golden{{
		Inputs:    []models.GoldenTensor{{Name: "input", DataType: models.FP32, Shape: []int64{1, int64(s.sizes[0])}, Data: inJSON}},
		Outputs:   []models.GoldenTensor{{Name: m.Signature().Outputs[0].Name, DataType: models.FP32, Shape: []int64{1, int64(s.sizes[len(s.sizes)-1])}, Data: outJSON}},
		Tolerance: 1e-5,
	}}
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(repo, s.name, "config.json"), append(cb, '\n'), 0o644); err != nil {
		return "", err
	}
	return path, nil
}
