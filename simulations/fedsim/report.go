package fedsim

import (
	"bufio"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/simulations/internal/simplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WriteCSV writes points as CSV with the header "<xname>,accuracy,loss,
// epsilon" (xname is "round" for Run, "epoch" for Centralized). An
// infinite ε is written as "inf".
func WriteCSV(w io.Writer, xname string, points []Point) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s,accuracy,loss,epsilon\n", xname)
	for _, p := range points {
		fmt.Fprintf(bw, "%d,%s,%s,%s\n", p.Round, num(p.Accuracy), num(p.Loss), num(p.Epsilon))
	}
	return bw.Flush()
}

// num formats v for CSV: shortest exact form, "inf", "-inf" or "nan".
func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	case math.IsNaN(v):
		return "nan"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Series is one line of an accuracy plot.
type Series struct {
	Name   string
	Points []Point
}

// Level is a horizontal reference line of an accuracy plot (a baseline or
// a target), in accuracy units [0, 1].
type Level struct {
	Name  string
	Value float64
}

// PlotAccuracy renders test accuracy (in percent) against the round for
// every series, plus the levels as dashed horizontal lines, and writes
// the PNG to w. The y axis spans the data with a small margin.
func PlotAccuracy(w io.Writer, title string, series []Series, levels []Level) error {
	p := newPlot()
	p.Title.Text = title
	p.X.Label.Text = "round"
	p.Y.Label.Text = "test accuracy (%)"
	leg := plot.NewLegend()
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), math.Inf(-1)
	maxRound := 1.0
	for _, s := range series {
		for _, pt := range s.Points {
			lo, hi = math.Min(lo, pt.Accuracy), math.Max(hi, pt.Accuracy)
			maxRound = math.Max(maxRound, float64(pt.Round))
		}
	}
	for _, l := range levels {
		lo, hi = math.Min(lo, l.Value), math.Max(hi, l.Value)
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	for i, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(s.Points))
		for k, pt := range s.Points {
			xy[k] = plotter.XY{X: float64(pt.Round), Y: 100 * pt.Accuracy}
		}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("plot %q: series %q: %w", title, s.Name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.8)
		p.Add(line)
		leg.Add(s.Name, line)
	}
	for i, l := range levels {
		xy := plotter.XYs{{X: 0, Y: 100 * l.Value}, {X: maxRound, Y: 100 * l.Value}}
		line, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("plot %q: level %q: %w", title, l.Name, err)
		}
		line.Color = color.Gray{Y: uint8(60 + 50*(i%3))}
		line.Width = vg.Points(1.4)
		line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(line)
		leg.Add(l.Name, line)
	}
	span := math.Max(hi-lo, 0.02)
	p.Y.Min = 100 * math.Max(0, lo-0.08*span)
	p.Y.Max = 100 * math.Min(1, hi+0.05*span)
	p.X.Min, p.X.Max = 0, maxRound
	return simplot.WriteLegendBelow(w, p, &leg, len(series)+len(levels))
}

// PlotAggregate renders the median aggregation time against the number
// of updates, with the target as a dashed line, and writes the PNG to w.
func PlotAggregate(w io.Writer, res *AggBenchResult, target time.Duration) error {
	p := newPlot()
	p.Title.Text = fmt.Sprintf("Aggregation time: %s of %s-parameter updates, GOMAXPROCS=%d", res.Aggregator, humanCount(res.Params), res.GOMAXPROCS)
	p.X.Label.Text = "updates aggregated"
	p.Y.Label.Text = "time per aggregation (ms)"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Add(plotter.NewGrid())
	med := make(plotter.XYs, len(res.Timings))
	mins := make(plotter.XYs, len(res.Timings))
	maxX, maxY := 1.0, ms(target)
	for i, t := range res.Timings {
		med[i] = plotter.XY{X: float64(t.Updates), Y: ms(t.Median)}
		mins[i] = plotter.XY{X: float64(t.Updates), Y: ms(t.Min)}
		maxX, maxY = math.Max(maxX, float64(t.Updates)), math.Max(maxY, ms(t.Median))
	}
	line, points, err := plotter.NewLinePoints(med)
	if err != nil {
		return fmt.Errorf("plot aggregate: %w", err)
	}
	line.Color, points.Color = plotutil.Color(0), plotutil.Color(0)
	line.Width = vg.Points(1.8)
	p.Add(line, points)
	p.Legend.Add("median", line, points)
	sc, err := plotter.NewScatter(mins)
	if err != nil {
		return fmt.Errorf("plot aggregate: %w", err)
	}
	sc.Color = plotutil.Color(1)
	sc.Shape = draw.CrossGlyph{}
	p.Add(sc)
	p.Legend.Add("fastest", sc)
	if target > 0 {
		tl, err := plotter.NewLine(plotter.XYs{{X: 0, Y: ms(target)}, {X: maxX, Y: ms(target)}})
		if err != nil {
			return fmt.Errorf("plot aggregate: %w", err)
		}
		tl.Color = color.Gray{Y: 90}
		tl.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		tl.Width = vg.Points(1.4)
		p.Add(tl)
		p.Legend.Add(fmt.Sprintf("target %v", target), tl)
	}
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Max = maxY * 1.15
	return writePNG(w, p)
}

// newPlot returns a plot with a larger title than gonum's default.
func newPlot() *plot.Plot {
	p := plot.New()
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Title.Padding = vg.Points(8)
	return p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// humanCount writes 1000000 as "1M" and 100000 as "100k".
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func writePNG(w io.Writer, p *plot.Plot) error {
	wt, err := p.WriterTo(simplot.Width, simplot.Height, "png")
	if err != nil {
		return fmt.Errorf("render %q: %w", p.Title.Text, err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("write %q: %w", p.Title.Text, err)
	}
	return nil
}
