package bench

import (
	"strings"
	"testing"
	"time"
)

func us(n int) time.Duration { return time.Duration(n) * time.Microsecond }

func TestVerdicts(t *testing.T) {
	r := &SuiteReport{
		Rounds: map[string][]Report{
			seriesPetrelVsBaseline: {{P50: us(200)}, {P50: us(180)}, {P50: us(500)}},
			seriesBaselineJSON:     {{P50: us(190)}},
		},
		OwnCosts: []OwnCost{
			{Protocol: "h1", Encoding: EncodingJSON, Cost: us(40)},
			{Protocol: "h1", Encoding: EncodingBinary, Cost: us(26)},
			{Protocol: "h3", Encoding: EncodingJSON, Cost: us(90)},
		},
		PetrelSmall64:   []Report{{Throughput: 3000}, {Throughput: 3100}},
		BaselineSmall64: []Report{{Throughput: 2000}},
		PetrelLarge64:   []Report{{RowsPerSec: 900}},
		BaselineLarge64: []Report{{RowsPerSec: 200}},
		InProcessLarge: []InProcessReport{{
			Petrel:  InProcessResult{Runtime: RuntimePetrel, RowsPerSec: 1000, Iterations: 1},
			Default: InProcessResult{Runtime: RuntimeDefault, RowsPerSec: 1600, Iterations: 1},
		}},
		NodeMemory: Memory{RSS: 60 << 20, Peak: 70 << 20},
	}
	want := []string{"PASS", "FAIL", "info: FAIL", "FAIL", "PASS", "FAIL", "FAIL", "PASS"}
	vs := r.Verdicts()
	if len(vs) != len(want) {
		t.Fatalf("%d verdicts, want %d: %+v", len(vs), len(want), vs)
	}
	for i, v := range vs {
		if v.Result != want[i] {
			t.Errorf("verdict %d (%s: %s against %s) = %s, want %s", i, v.Figure, v.Measured, v.Target, v.Result, want[i])
		}
	}
	// Paired by round: only round 1 has both sides.
	if !strings.Contains(vs[3].Measured, "200 µs vs 190 µs; Petrel − baseline per round 10 µs") {
		t.Errorf("p50 comparison: %q", vs[3].Measured)
	}
	if !strings.Contains(vs[4].Measured, "ratio per round 1.50×, median 1.50×") {
		t.Errorf("small throughput comparison: %q", vs[4].Measured)
	}
	if !strings.Contains(vs[6].Measured, "median 56%") || !strings.Contains(vs[6].Measured, RuntimeDefault) {
		t.Errorf("in-process comparison is not against the faster runtime: %q", vs[6].Measured)
	}
	if !r.Failed() {
		t.Error("Failed() = false with failing targets")
	}
	md := r.Markdown()
	for _, s := range []string{"## Targets", "| Own cost per request, mlp-small, json, HTTP/1.1, c=1 |", "## Concurrency 64"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
}

func TestFormat(t *testing.T) {
	cases := map[time.Duration]string{0: "0 µs", us(37): "37 µs", us(9999): "9999 µs", 12 * time.Millisecond: "12.0 ms", -us(5): "−5 µs"}
	for d, want := range cases {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	if got := formatBytes(100 << 20); got != "100.0 MB" {
		t.Errorf("formatBytes = %q", got)
	}
}

func TestClientLine(t *testing.T) {
	r := &SuiteReport{
		Config: SuiteConfig{Transport: TransportRawH1},
		Rounds: map[string][]Report{
			"h1 noop":       {{Client: TransportRawH1}},
			"h2 noop":       {{Client: "net/http h2"}},
			"h3 noop":       {{Client: "quic-go h3"}},
			"baseline noop": {{Client: TransportRawH1}},
		},
		PetrelSmall64:   []Report{{Client: TransportRawH1}},
		BaselineSmall64: []Report{{Client: TransportRawH1}},
	}
	md := r.Markdown()
	for _, s := range []string{"Load generator (--client raw-h1): HTTP/1.1 requests, Petrel's and the baseline's alike, over raw-h1, node/bench's lean HTTP/1.1 client", "through node/client (net/http h2, quic-go h3)"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	r.Config.Transport = TransportNetHTTP
	for _, reps := range [][]Report{r.Rounds["h1 noop"], r.Rounds["baseline noop"], r.PetrelSmall64, r.BaselineSmall64} {
		reps[0].Client = "net/http h1"
	}
	if line := r.clientLine(); !strings.Contains(line, "(--client nethttp): HTTP/1.1 requests, Petrel's and the baseline's alike, over net/http h1 through node/client") || strings.Contains(line, "raw-h1") {
		t.Errorf("nethttp line: %q", line)
	}
	if line := (&SuiteReport{}).clientLine(); !strings.Contains(line, "--client raw-h1; no HTTP/1.1 run") {
		t.Errorf("empty report: %q", line)
	}
}
