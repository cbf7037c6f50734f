package bench

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/node/client"
)

// Targets, from the performance issue (docs/PERFORMANCE.md quotes it).
const (
	TargetOwnCostJSON      = 40 * time.Microsecond
	TargetOwnCostBinary    = 25 * time.Microsecond
	TargetSmallSpeedup     = 1.5
	TargetLargeSpeedup     = 5.0
	TargetLargeOfInProcess = 0.60
	TargetNodeRSS          = 100 << 20
)

// Verdict is one figure against its target.
type Verdict struct {
	Figure   string
	Measured string
	Target   string
	// Result is "PASS", "FAIL", or "info" for figures without a target.
	Result string
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

var protoNames = map[string]string{client.HTTP1: "HTTP/1.1", client.HTTP2: "HTTP/2 (h2c)", client.HTTP3: "HTTP/3"}

func protoName(p string) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return p
}

// Verdicts lists every target figure of the report: own cost per protocol
// and encoding (the targets apply to HTTP/1.1; HTTP/2 and HTTP/3 are
// reported), the baseline comparisons, batching against in-process ONNX
// Runtime, and resident memory.
func (r *SuiteReport) Verdicts() []Verdict {
	var vs []Verdict
	for _, oc := range r.OwnCosts {
		target := TargetOwnCostJSON
		if oc.Encoding == EncodingBinary {
			target = TargetOwnCostBinary
		}
		v := Verdict{
			Figure:   fmt.Sprintf("Own cost per request, mlp-small, %s, %s, c=1", oc.Encoding, protoName(oc.Protocol)),
			Measured: fmt.Sprintf("%s (rounds %s; p50s: infer %s, no-op %s, in-process %s)", fmtDur(oc.Cost), fmtDurs(oc.Rounds), fmtDur(oc.InferP50), fmtDur(oc.NoopP50), fmtDur(oc.InProcessP50)),
			Target:   "≤ " + fmtDur(target),
			Result:   passFail(oc.Cost <= target),
		}
		if oc.Protocol != client.HTTP1 {
			v.Target += " (reported)"
			v.Result = "info: " + v.Result
		}
		vs = append(vs, v)
	}
	if diffs := pairedDiffs(r.Rounds[seriesPetrelVsBaseline], r.Rounds[seriesBaselineJSON]); len(diffs) > 0 {
		d := Median(diffs)
		vs = append(vs, Verdict{
			Figure: "p50 latency, mlp-small, JSON, HTTP/1.1, c=1: Petrel vs baseline",
			Measured: fmt.Sprintf("%s vs %s; Petrel − baseline per round %s, median %s",
				fmtDur(r.p50(seriesPetrelVsBaseline)), fmtDur(r.p50(seriesBaselineJSON)), fmtDurs(diffs), fmtDur(d)),
			Target: "Petrel ≤ baseline",
			Result: passFail(d <= 0),
		})
	}
	if ratios := pairedRatios(r.PetrelSmall64, r.BaselineSmall64, rate(false)); len(ratios) > 0 {
		m := MedianFloat(ratios)
		vs = append(vs, Verdict{
			Figure: "Throughput, mlp-small, JSON, HTTP/1.1, c=64: Petrel vs baseline",
			Measured: fmt.Sprintf("%.0f vs %.0f req/s; ratio per round %s, median %.2f×",
				medianThroughput(r.PetrelSmall64, false), medianThroughput(r.BaselineSmall64, false), fmtRatios(ratios), m),
			Target: fmt.Sprintf("≥ %.1f×", TargetSmallSpeedup),
			Result: passFail(m >= TargetSmallSpeedup),
		})
	}
	if ratios := pairedRatios(r.PetrelLarge64, r.BaselineLarge64, rate(true)); len(ratios) > 0 {
		m := MedianFloat(ratios)
		vs = append(vs, Verdict{
			Figure: "Throughput, mlp-large, JSON, HTTP/1.1, c=64: Petrel vs baseline",
			Measured: fmt.Sprintf("%.0f vs %.0f rows/s; ratio per round %s, median %.2f×",
				medianThroughput(r.PetrelLarge64, true), medianThroughput(r.BaselineLarge64, true), fmtRatios(ratios), m),
			Target: fmt.Sprintf("≥ %.0f×", TargetLargeSpeedup),
			Result: passFail(m >= TargetLargeSpeedup),
		})
	}
	var best []Report
	var which []string
	for _, ip := range r.InProcessLarge {
		_, b := ip.Best()
		best = append(best, Report{RowsPerSec: b.RowsPerSec})
		which = append(which, b.Runtime)
	}
	for _, enc := range []struct {
		name string
		runs []Report
	}{{"JSON", r.PetrelLarge64}, {"binary tensors", r.PetrelLarge64Binary}} {
		ratios := pairedRatios(enc.runs, best, rate(true))
		if len(ratios) == 0 {
			continue
		}
		m := MedianFloat(ratios)
		vs = append(vs, Verdict{
			Figure: "Throughput, mlp-large, c=64, " + enc.name + ": Petrel vs in-process ONNX Runtime at batch 64",
			Measured: fmt.Sprintf("%.0f vs %.0f rows/s (in-process: the fastest runtime of each round, %s); share per round %s, median %.0f%%",
				medianThroughput(enc.runs, true), medianThroughput(best, true), strings.Join(which, ", "), fmtPercents(ratios), 100*m),
			Target: fmt.Sprintf("≥ %.0f%%", 100*TargetLargeOfInProcess),
			Result: passFail(m >= TargetLargeOfInProcess),
		})
	}
	if r.NodeMemory.RSS > 0 {
		vs = append(vs, Verdict{
			Figure:   "Node resident memory, only mlp-small loaded, after load",
			Measured: fmt.Sprintf("%s (peak %s; baseline %s)", formatBytes(r.NodeMemory.RSS), formatBytes(r.NodeMemory.Peak), formatBytes(r.BaselineMemory.RSS)),
			Target:   "≤ " + formatBytes(TargetNodeRSS),
			Result:   passFail(r.NodeMemory.RSS <= TargetNodeRSS),
		})
	}
	return vs
}

// Failed reports whether any target (not the informational figures)
// failed.
func (r *SuiteReport) Failed() bool {
	for _, v := range r.Verdicts() {
		if v.Result == "FAIL" {
			return true
		}
	}
	return false
}

// Markdown renders the report: targets, floors, every run, variants.
func (r *SuiteReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Petrel benchmark suite\n\n")
	fmt.Fprintf(&b, "Run %s, took %s. Host: %s. ONNX Runtime %s.\n",
		r.Started.UTC().Format(time.RFC3339), r.Took.Round(time.Second), r.Host, r.ORTVersion)
	if r.ForeignCPU >= 0 {
		fmt.Fprintf(&b, "Other processes took %.0f%% of the machine's CPU time during the run (0%% is a quiet machine; the figures are noisier the higher it is).\n", 100*r.ForeignCPU)
	}
	b.WriteString(r.clientLine())
	c := r.Config
	fmt.Fprintf(&b, "Each figure is the median of %d alternating rounds (the lower middle of an even count). Concurrency 1: requests interleaved one by one within a server and protocol, %s per series per round; concurrency 64: %s (mlp-small) and %s (mlp-large) per run; %s warm-up before each.\n\n",
		c.Rounds, c.Window, c.ThroughputWindow, c.LargeWindow, c.Warmup)

	b.WriteString("## Targets\n\n| Figure | Measured | Target | Result |\n|---|---|---|---|\n")
	for _, v := range r.Verdicts() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", v.Figure, v.Measured, v.Target, v.Result)
	}

	b.WriteString("\n## Floors and series (concurrency 1, p50 per round)\n\n| Series | p50 (median) | rounds | p99 of median round | errors |\n|---|---|---|---|---|\n")
	keys := make([]string, 0, len(r.Rounds))
	for k := range r.Rounds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var ps []string
		errs := 0
		var p99s []time.Duration
		for _, rep := range r.Rounds[k] {
			ps = append(ps, fmtDur(rep.P50))
			p99s = append(p99s, rep.P99)
			errs += rep.Errors
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", k, fmtDur(r.p50(k)), strings.Join(ps, ", "), fmtDur(Median(p99s)), errs)
	}
	if len(r.InProcessSmall) > 0 {
		var pp, dp []string
		for _, ip := range r.InProcessSmall {
			pp = append(pp, fmtDur(ip.Petrel.P50))
			dp = append(dp, fmtDur(ip.Default.P50))
		}
		best, which := r.InProcessSmallP50()
		fmt.Fprintf(&b, "| in-process mlp-small batch 1, %s | | %s | | |\n", RuntimePetrel, strings.Join(pp, ", "))
		fmt.Fprintf(&b, "| in-process mlp-small batch 1, %s | | %s | | |\n", RuntimeDefault, strings.Join(dp, ", "))
		fmt.Fprintf(&b, "| in-process mlp-small batch 1, best (used for own cost) | %s | %s | | |\n", fmtDur(best), which)
	}
	if ip := r.InProcessSmallIdle; ip.Petrel.Iterations > 0 {
		fmt.Fprintf(&b, "| in-process mlp-small batch 1 after %s idle (not used) | %s, %s | %s, %s | | |\n",
			fmtDur(IdleGap), fmtDur(ip.Petrel.P50), fmtDur(ip.Default.P50), RuntimePetrel, RuntimeDefault)
	}
	for i, il := range r.InProcessLarge {
		if i == 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "In-process mlp-large at batch 64, round %d: %.0f rows/s with %s (p50 %s per run), %.0f rows/s with %s (p50 %s per run), %.0f rows/s with %s (p50 %s per run).\n",
			i+1, il.Petrel.RowsPerSec, RuntimePetrel, fmtDur(il.Petrel.P50), il.Default.RowsPerSec, RuntimeDefault, fmtDur(il.Default.P50),
			il.Parallel.RowsPerSec, RuntimeParallel, fmtDur(il.Parallel.P50))
	}

	b.WriteString("\n## Concurrency 64\n\n| Run | req/s | rows/s | p50 | p90 | p99 | errors |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, rep Report) {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %s | %s | %d |\n", name, rep.Throughput, rep.RowsPerSec, fmtDur(rep.P50), fmtDur(rep.P90), fmtDur(rep.P99), rep.Errors)
	}
	for i, rep := range r.PetrelSmall64 {
		row(fmt.Sprintf("Petrel mlp-small, JSON, HTTP/1.1 (round %d)", i+1), rep)
	}
	for i, rep := range r.BaselineSmall64 {
		row(fmt.Sprintf("baseline mlp-small, JSON, HTTP/1.1 (round %d)", i+1), rep)
	}
	for i, rep := range r.PetrelLarge64 {
		row(fmt.Sprintf("Petrel mlp-large, JSON, HTTP/1.1 (round %d)", i+1), rep)
	}
	for i, rep := range r.BaselineLarge64 {
		row(fmt.Sprintf("baseline mlp-large, JSON, HTTP/1.1 (round %d)", i+1), rep)
	}
	for i, rep := range r.PetrelLarge64Binary {
		row(fmt.Sprintf("Petrel mlp-large, binary, HTTP/1.1 (round %d)", i+1), rep)
	}
	for _, e := range r.Extra {
		row(e.Name, e.Report)
	}

	if len(r.Variants) > 0 {
		b.WriteString("\n## Node variants (session options)\n\n" +
			"Each variant next to the default node (intra-op 1, as many executions at once as cores, no spinning, arena on, batch sizes profiled, busy-only queue delay), one window each. " +
			"mlp-small: JSON over HTTP/1.1 at c=1, the two nodes' no-ops and inferences interleaved; 'cost' is inference p50 − no-op p50. " +
			"mlp-large: JSON over HTTP/1.1 at c=64, default node then variant.\n\n" +
			"| Variant | mlp-small cost, variant vs default | mlp-large rows/s, variant vs default | ratio |\n|---|---|---|---|\n")
		for _, v := range r.Variants {
			if v.Err != "" {
				fmt.Fprintf(&b, "| %s | failed: %s | | |\n", v.Name, strings.ReplaceAll(v.Err, "\n", " "))
				continue
			}
			ratio := 0.0
			if v.DefaultLargeRowsPerS > 0 {
				ratio = v.LargeRowsPerS / v.DefaultLargeRowsPerS
			}
			fmt.Fprintf(&b, "| %s | %s vs %s (p50 %s / %s) | %.0f vs %.0f | %.2f× |\n", v.Name,
				fmtDur(v.SmallP50-v.SmallNoopP50), fmtDur(v.DefaultSmallP50-v.DefaultSmallNoopP50), fmtDur(v.SmallP50), fmtDur(v.DefaultSmallP50),
				v.LargeRowsPerS, v.DefaultLargeRowsPerS, ratio)
		}
	}
	if r.NodeMemory.RSS > 0 {
		fmt.Fprintf(&b, "\nMemory: node with only mlp-small RSS %s (peak %s); baseline with mlp-small RSS %s (peak %s).\n",
			formatBytes(r.NodeMemory.RSS), formatBytes(r.NodeMemory.Peak), formatBytes(r.BaselineMemory.RSS), formatBytes(r.BaselineMemory.Peak))
	}
	return b.String()
}

// clientDescriptions explain Report.Client for the report header.
var clientDescriptions = map[string]string{
	TransportRawH1: "raw-h1, node/bench's lean HTTP/1.1 client (one keep-alive connection per worker and server, request bytes built once and sent with one write, the response parsed in place, no allocation per request)",
	"net/http h1":  "net/http h1 through node/client (net/http's Transport, with its read and write goroutines per connection)",
}

// clientLine says which clients sent the requests, as the runs recorded
// it, and how the suite was configured (--client).
func (r *SuiteReport) clientLine() string {
	var h1, other []string
	add := func(rep Report) {
		switch {
		case rep.Client == "":
		case rep.Client == TransportRawH1 || strings.HasSuffix(rep.Client, " h1"):
			if !slices.Contains(h1, rep.Client) {
				h1 = append(h1, rep.Client)
			}
		default:
			if !slices.Contains(other, rep.Client) {
				other = append(other, rep.Client)
			}
		}
	}
	for _, reps := range [][]Report{r.PetrelSmall64, r.BaselineSmall64, r.PetrelLarge64, r.BaselineLarge64, r.PetrelLarge64Binary} {
		for _, rep := range reps {
			add(rep)
		}
	}
	keys := make([]string, 0, len(r.Rounds))
	for k := range r.Rounds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, rep := range r.Rounds[k] {
			add(rep)
		}
	}
	transport := r.Config.Transport
	if transport == "" {
		transport = TransportRawH1
	}
	if len(h1) == 0 {
		return fmt.Sprintf("Load generator: configured with --client %s; no HTTP/1.1 run recorded its client.\n", transport)
	}
	descs := make([]string, len(h1))
	for i, c := range h1 {
		descs[i] = c
		if d, ok := clientDescriptions[c]; ok {
			descs[i] = d
		}
	}
	line := fmt.Sprintf("Load generator (--client %s): HTTP/1.1 requests, Petrel's and the baseline's alike, over %s", transport, strings.Join(descs, " and "))
	if len(other) > 0 {
		line += fmt.Sprintf("; HTTP/2 and HTTP/3 through node/client (%s)", strings.Join(other, ", "))
	}
	return line + ".\n"
}

// fmtDur prints a duration in µs below 10 ms, else in ms.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0 µs"
	case d < 0:
		return "−" + fmtDur(-d)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// rate picks rows/s or req/s of a report.
func rate(rows bool) func(Report) float64 {
	if rows {
		return func(r Report) float64 { return r.RowsPerSec }
	}
	return func(r Report) float64 { return r.Throughput }
}

// pairedRatios divides a[i] by b[i] for the rounds both have: rounds were
// taken side by side, so each ratio saw one machine state.
func pairedRatios(a, b []Report, f func(Report) float64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if d := f(b[i]); d > 0 {
			out = append(out, f(a[i])/d)
		}
	}
	return out
}

// pairedDiffs is a[i].P50 − b[i].P50 for the rounds both have.
func pairedDiffs(a, b []Report) []time.Duration {
	var out []time.Duration
	for i := range min(len(a), len(b)) {
		if a[i].P50 > 0 && b[i].P50 > 0 {
			out = append(out, a[i].P50-b[i].P50)
		}
	}
	return out
}

func fmtRatios(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprintf("%.2f×", v)
	}
	return strings.Join(s, ", ")
}

func fmtPercents(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprintf("%.0f%%", 100*v)
	}
	return strings.Join(s, ", ")
}

func fmtDurs(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmtDur(d)
	}
	return strings.Join(s, ", ")
}

// formatBytes prints a size in MB (MiB, as RSS targets mean).
func formatBytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}
