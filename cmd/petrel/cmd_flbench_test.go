package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// flCheckFiles fails unless every file exists in dir and is not empty; PNG
// files must start with the PNG signature.
func flCheckFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", n)
		}
		if strings.HasSuffix(n, ".png") && !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG", n)
		}
	}
}

func TestFLBenchAggregate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fl")
	code, stdout, stderr := runCmd(t, "fl", "bench", "--experiments", "aggregate", "--out", out,
		"--agg-updates", "3,6", "--agg-params", "2000", "--agg-repeats", "2")
	if code != 0 {
		t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	flCheckFiles(t, out, "aggregate.csv", "aggregate.png", "summary.md", "summary.json")
	csv, _ := os.ReadFile(filepath.Join(out, "aggregate.csv"))
	lines := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(lines) != 1+2*2 || lines[0] != "updates,params,gomaxprocs,repeat,ms" || !strings.HasPrefix(lines[1], "3,2000,1,1,") {
		t.Fatalf("aggregate.csv:\n%s", csv)
	}
	var sum struct {
		Targets []struct {
			Name string
			Met  *bool
		}
	}
	js, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(js, &sum); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if len(sum.Targets) != 1 || sum.Targets[0].Name != "aggregation throughput" || sum.Targets[0].Met == nil {
		t.Fatalf("summary.json targets: %s", js)
	}
	if !strings.Contains(stdout, "fl bench: aggregate: 6 updates") {
		t.Fatalf("no progress line in\n%s", stdout)
	}
}

// flWriteIDX writes a tiny Fashion-MNIST look-alike (4×4 images of 10
// classes whose pixels encode the class) into dir.
func flWriteIDX(t *testing.T, dir, prefix string, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	img := binary.BigEndian.AppendUint32(nil, 0x00000803)
	img = binary.BigEndian.AppendUint32(img, uint32(n))
	img = binary.BigEndian.AppendUint32(img, 4)
	img = binary.BigEndian.AppendUint32(img, 4)
	lab := binary.BigEndian.AppendUint32(nil, 0x00000801)
	lab = binary.BigEndian.AppendUint32(lab, uint32(n))
	for range n {
		y := rng.IntN(10)
		lab = append(lab, byte(y))
		for p := range 16 {
			v := 20 + rng.IntN(40)
			if p == y || p == y+5 {
				v = 200 + rng.IntN(50)
			}
			img = append(img, byte(v))
		}
	}
	for name, b := range map[string][]byte{prefix + "-images-idx3-ubyte": img, prefix + "-labels-idx1-ubyte": lab} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFLBenchLearning(t *testing.T) {
	data := t.TempDir()
	flWriteIDX(t, data, "train", 600, 1)
	flWriteIDX(t, data, "t10k", 200, 2)
	out := filepath.Join(t.TempDir(), "fl")
	code, stdout, stderr := runCmd(t, "fl", "bench", "--data", data, "--out", out,
		"--experiments", "centralized,iid,dirichlet,attack-fedavg,attack-robust,dp-eps8,secagg",
		"--rounds", "3", "--clients", "6", "--fraction", "1", "--hidden", "8", "--local-epochs", "1", "--lr", "0.05",
		"--central-epochs", "2", "--robust", "median,krum", "--secagg-clients", "6", "--secagg-params", "300")
	if code != 0 {
		t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	flCheckFiles(t, out, "centralized.csv", "iid.csv", "dirichlet.csv", "attack-fedavg.csv", "attack-median.csv", "attack-krum.csv",
		"dp-eps8.csv", "secagg.csv", "accuracy-partition.png", "accuracy-attack.png", "accuracy-dp.png", "summary.md", "summary.json")
	iid, _ := os.ReadFile(filepath.Join(out, "iid.csv"))
	if lines := strings.Split(strings.TrimSpace(string(iid)), "\n"); len(lines) != 4 || lines[0] != "round,accuracy,loss,epsilon" || !strings.HasPrefix(lines[3], "3,") {
		t.Fatalf("iid.csv:\n%s", iid)
	}
	central, _ := os.ReadFile(filepath.Join(out, "centralized.csv"))
	if !strings.HasPrefix(string(central), "epoch,accuracy,loss,epsilon\n1,") {
		t.Fatalf("centralized.csv:\n%s", central)
	}
	md, _ := os.ReadFile(filepath.Join(out, "summary.md"))
	for _, want := range []string{"FedAvg vs centralised on Dirichlet(0.5)", "robust aggregation under attack", "differential privacy",
		"secure aggregation cost", "![attack: FedAvg vs robust aggregators](accuracy-attack.png)", "--rounds 3"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
	for _, want := range []string{"fl bench: iid: round 3/3", "fl bench: centralized: epoch 2/2", "fl bench: secagg: per client"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

func TestFLBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--experiments", "iid,bogus"},
		{"--experiments", ","},
		{"--robust", "median,mean"},
		{"--agg-updates", "10,x"},
		{"--central-epochs", "0"},
		{"--out", ""},
		{"extra"},
		{"--experiments", "secagg", "--secagg-clients", "1"},
		{"--experiments", "aggregate", "--agg-repeats", "0"},
		{"--rounds", "0"},
		{"--lr", "0"},
		{"--fraction", "NaN"},
		{"--secagg-dropout", "1"},
	} {
		code, _, stderr := runCmd(t, append([]string{"fl", "bench", "--out", t.TempDir()}, args...)...)
		if code != 2 || !strings.Contains(stderr, "usage: petrel fl bench") {
			t.Errorf("%v: code %d, stderr %q", args, code, stderr)
		}
	}
	// Learning configurations are checked before anything runs.
	data := t.TempDir()
	flWriteIDX(t, data, "train", 100, 1)
	flWriteIDX(t, data, "t10k", 50, 2)
	for _, args := range [][]string{
		{"--fraction", "2"},
		{"--clients", "101"},
		{"--momentum", "1"},
		{"--attack", "noise"},
		{"--attack-fraction", "1"},
		{"--delta", "1"},
	} {
		out := t.TempDir()
		code, stdout, stderr := runCmd(t, append([]string{"fl", "bench", "--out", out, "--data", data,
			"--experiments", "centralized,iid,dirichlet,attack-fedavg,dp-eps1"}, args...)...)
		if code != 2 || !strings.Contains(stderr, "usage: petrel fl bench") || strings.Contains(stdout, "final accuracy") {
			t.Errorf("%v: code %d, stdout %.300q, stderr %q", args, code, stdout, stderr)
		}
	}
	// A missing data set is a runtime error, not a usage error.
	code, _, stderr := runCmd(t, "fl", "bench", "--out", t.TempDir(), "--experiments", "iid", "--data", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "fashion-mnist") {
		t.Errorf("missing data: code %d, stderr %q", code, stderr)
	}
}
