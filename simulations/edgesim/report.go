package edgesim

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"github.com/petrel-mesh/petrel/simulations/internal/simplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlots writes three PNG plots comparing results into dir (created
// if needed): PREFIX-latency.png (the latency CDFs, with the first
// result's oracle dashed), PREFIX-served.png (where requests were served)
// and PREFIX-p99.png (p99 latency over the run). PREFIX is the results'
// scenario when they share one, else "edgesim". The legend names each
// result by Name.
func WritePlots(dir string, results []*Result) error {
	if len(results) == 0 {
		return fmt.Errorf("edgesim: no results to plot")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("edgesim: %w", err)
	}
	prefix := results[0].Scenario
	for _, r := range results {
		if r.Scenario != prefix {
			prefix = "edgesim"
		}
	}
	if prefix == "" {
		prefix = "edgesim"
	}
	if err := plotLatency(filepath.Join(dir, prefix+"-latency.png"), prefix, results); err != nil {
		return err
	}
	if err := plotServed(filepath.Join(dir, prefix+"-served.png"), prefix, results); err != nil {
		return err
	}
	return plotSeries(filepath.Join(dir, prefix+"-p99.png"), prefix, results)
}

// cdfPoints samples a sorted slice into at most 400 CDF points.
func cdfPoints(sorted []float64) plotter.XYs {
	n := len(sorted)
	if n == 0 {
		return nil
	}
	step := max(1, n/400)
	var xy plotter.XYs
	for i := 0; i < n; i += step {
		xy = append(xy, plotter.XY{X: math.Max(sorted[i], 0.1), Y: float64(i+1) / float64(n)})
	}
	xy = append(xy, plotter.XY{X: math.Max(sorted[n-1], 0.1), Y: 1})
	return xy
}

func plotLatency(path, title string, results []*Result) error {
	p := newPlot()
	p.Title.Text = title + ": client latency CDF"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "share of answered requests"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	leg := plot.NewLegend()
	lines := 0
	for i, r := range results {
		xy := cdfPoints(r.latencies)
		if xy == nil {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("edgesim: plot %s: %w", r.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.8)
		p.Add(l)
		leg.Add(fmt.Sprintf("%s (p99 %.0f ms)", r.Name, ms(r.P99)), l)
		lines++
	}
	if xy := cdfPoints(results[0].oracle); xy != nil {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("edgesim: plot oracle: %w", err)
		}
		l.Color = color.Gray{Y: 60}
		l.Width = vg.Points(1.4)
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(l)
		leg.Add(fmt.Sprintf("oracle (p99 %.0f ms)", ms(results[0].OracleP99)), l)
		lines++
	}
	p.Y.Min, p.Y.Max = 0, 1
	return savePNG(path, p, &leg, lines)
}

func plotServed(path, title string, results []*Result) error {
	p := newPlot()
	p.Title.Text = title + ": where requests were served"
	p.Y.Label.Text = "share of requests (%)"
	p.Add(plotter.NewGrid())
	leg := plot.NewLegend()
	names := make([]string, len(results))
	kinds := []string{"local", "peer", "central", "failed"}
	w := vg.Points(14)
	for k, kind := range kinds {
		vals := make(plotter.Values, len(results))
		for i, r := range results {
			l, pe, c, f := r.Share()
			vals[i] = 100 * []float64{l, pe, c, f}[k]
			names[i] = r.Name
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("edgesim: plot served: %w", err)
		}
		b.Color = plotutil.Color(k)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(k-len(kinds)/2)*w + w/2
		p.Add(b)
		leg.Add(kind, b)
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, 100
	return savePNG(path, p, &leg, len(kinds))
}

func plotSeries(path, title string, results []*Result) error {
	p := newPlot()
	p.Title.Text = title + ": p99 latency over the run"
	p.X.Label.Text = "simulated time (s)"
	p.Y.Label.Text = "p99 latency (ms)"
	p.Add(plotter.NewGrid())
	leg := plot.NewLegend()
	for i, r := range results {
		var xy plotter.XYs
		for _, b := range r.Series {
			if b.Requests-b.Failed > 0 {
				xy = append(xy, plotter.XY{X: b.Start.Seconds(), Y: ms(b.P99)})
			}
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("edgesim: plot %s: %w", r.Name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.8)
		p.Add(l)
		leg.Add(r.Name, l)
	}
	p.Y.Min = 0
	return savePNG(path, p, &leg, len(results))
}

// newPlot returns a plot with a larger title than gonum's default.
func newPlot() *plot.Plot {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Title.Padding = vg.Points(8)
	return p
}

// savePNG renders p with leg (n entries) under the plot and writes the
// PNG to path.
func savePNG(path string, p *plot.Plot, leg *plot.Legend, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("edgesim: %w", err)
	}
	if err := simplot.WriteLegendBelow(f, p, leg, n); err != nil {
		f.Close()
		return fmt.Errorf("edgesim: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("edgesim: close %s: %w", path, err)
	}
	return nil
}
