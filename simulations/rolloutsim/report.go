package rolloutsim

import (
	"bufio"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/petrel-mesh/petrel/simulations/fedsim"
	"github.com/petrel-mesh/petrel/simulations/internal/simplot"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Report gathers the runs that WriteCSV and WritePlots write out.
type Report struct {
	// Rollouts are runs of a good version (for example at several site
	// counts); Rollbacks runs of a bad one. Either may be empty.
	Rollouts, Rollbacks []*RolloutResult
	// Churn is a RunChurn result, or nil.
	Churn *ChurnResult
}

// Files written by WriteCSV and WritePlots.
const (
	FileTimeline     = "rollout_timeline.csv"
	FileSummary      = "rollout_summary.csv"
	FileChurn        = "churn.csv"
	FileRolloutPlot  = "rollout.png"
	FileRollbackPlot = "rollback.png"
	FileChurnPlot    = "churn.png"
)

// WriteCSV writes the report's CSV files into dir (which must exist):
// FileTimeline and FileSummary for the rollout runs, FileChurn for the
// churn runs; files without runs are not written.
func WriteCSV(dir string, rep Report) error {
	runs := append(append([]*RolloutResult(nil), rep.Rollouts...), rep.Rollbacks...)
	var errs []error
	if len(runs) > 0 {
		errs = append(errs,
			writeFile(dir, FileTimeline, func(w io.Writer) error { return WriteTimelineCSV(w, runs) }),
			writeFile(dir, FileSummary, func(w io.Writer) error { return WriteSummaryCSV(w, runs) }))
	}
	if rep.Churn != nil {
		errs = append(errs, writeFile(dir, FileChurn, func(w io.Writer) error { return WriteChurnCSV(w, rep.Churn) }))
	}
	return errors.Join(errs...)
}

// WritePlots writes the report's PNG plots into dir (which must exist):
// FileRolloutPlot, FileRollbackPlot and FileChurnPlot, each only when it
// has runs to show.
func WritePlots(dir string, rep Report) error {
	var errs []error
	if len(rep.Rollouts) > 0 {
		errs = append(errs, writeFile(dir, FileRolloutPlot, func(w io.Writer) error {
			return PlotRollout(w, "Rollout of a good version: sites serving it", rep.Rollouts)
		}))
	}
	if len(rep.Rollbacks) > 0 {
		errs = append(errs, writeFile(dir, FileRollbackPlot, func(w io.Writer) error {
			return PlotRollback(w, "Automatic rollback of a bad version", rep.Rollbacks)
		}))
	}
	if rep.Churn != nil {
		errs = append(errs, writeFile(dir, FileChurnPlot, func(w io.Writer) error { return PlotChurn(w, rep.Churn) }))
	}
	return errors.Join(errs...)
}

// writeFile creates dir/name and fills it with write.
func writeFile(dir, name string, write func(io.Writer) error) error {
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("rolloutsim: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("rolloutsim: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rolloutsim: %w", err)
	}
	return nil
}

// kind names a run in CSV files and legends.
func kind(r *RolloutResult) string {
	if r.Config.Bad {
		return "bad"
	}
	return "good"
}

// secs formats a duration in seconds for CSV, or "" for Never.
func secs(d time.Duration) string {
	if d < 0 {
		return ""
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

func share(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

func fnum(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// WriteTimelineCSV writes the timelines of runs as CSV with the header
// "version,sites,t_s,weight,fetched,serving,full,share_serving,share_full".
func WriteTimelineCSV(w io.Writer, runs []*RolloutResult) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "version,sites,t_s,weight,fetched,serving,full,share_serving,share_full")
	for _, r := range runs {
		for _, s := range r.Timeline {
			fmt.Fprintf(bw, "%s,%d,%s,%s,%d,%d,%d,%s,%s\n", kind(r), r.Sites, secs(s.At), fnum(s.Weight),
				s.Fetched, s.Serving, s.Full, fnum(share(s.Serving, r.Sites)), fnum(share(s.Full, r.Sites)))
		}
	}
	return bw.Flush()
}

// WriteSummaryCSV writes one line per run: its outcome and times (empty
// when not reached, in seconds from the start of the rollout), the
// origin's egress and the fetches, then the oracle's times and the
// rollback's propagation (all_on_old_s − rolled_back_s) next to the
// oracle's.
func WriteSummaryCSV(w io.Writer, runs []*RolloutResult) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "version,sites,metros,final,completed,all_fetched_s,all_on_new_s,promoted_s,rolled_back_s,all_on_old_s,"+
		"max_weight,max_serving,origin_egress_bytes,peer_bytes,from_origin,from_peer,new_requests,new_errors,requests,reports,events,"+
		"oracle_fetched_s,oracle_all_on_new_s,rollback_propagation_s,oracle_propagation_s")
	for _, r := range runs {
		prop := Never
		if r.RolledBack >= 0 && r.AllOnOld >= 0 {
			prop = r.AllOnOld - r.RolledBack
		}
		fmt.Fprintf(bw, "%s,%d,%d,%s,%t,%s,%s,%s,%s,%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s,%s,%s\n",
			kind(r), r.Sites, r.Metros, r.Final, r.Completed, secs(r.AllFetched), secs(r.AllOnNew), secs(r.Promoted),
			secs(r.RolledBack), secs(r.AllOnOld), fnum(r.MaxWeight), r.MaxServing, r.OriginEgress, r.PeerBytes,
			r.FromOrigin, r.FromPeer, r.NewRequests, r.NewErrors, r.Requests, r.Reports, r.Events,
			secs(r.Oracle.Fetched), secs(r.Oracle.AllOnNew), secs(prop), secs(r.Oracle.Propagate))
	}
	return bw.Flush()
}

// WriteChurnCSV writes the accuracy per round at every churn level as CSV
// with the header "churn,offline,dropout,lost,round,accuracy,loss", lost
// being the share of sampled clients that sent nothing over the run. The
// centralised oracle, when run, follows with churn "central" and one row
// per epoch in the round column.
func WriteChurnCSV(w io.Writer, r *ChurnResult) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "churn,offline,dropout,lost,round,accuracy,loss")
	for _, l := range r.Levels {
		for _, p := range l.Result.Points {
			fmt.Fprintf(bw, "%s,%s,%s,%s,%d,%s,%s\n", fnum(l.Level), fnum(l.Churn.Unavailable), fnum(l.Churn.Dropout),
				fnum(l.lostShare()), p.Round, fnum(p.Accuracy), fnum(p.Loss))
		}
	}
	if r.Central != nil {
		for _, p := range r.Central.Points {
			fmt.Fprintf(bw, "central,,,,%d,%s,%s\n", p.Round, fnum(p.Accuracy), fnum(p.Loss))
		}
	}
	return bw.Flush()
}

// CentralAccuracy is the oracle's best test accuracy over its epochs, and
// false when the oracle was not run.
func (r *ChurnResult) CentralAccuracy() (float64, bool) {
	if r.Central == nil || len(r.Central.Points) == 0 {
		return 0, false
	}
	best := 0.0
	for _, p := range r.Central.Points {
		best = max(best, p.Accuracy)
	}
	return best, true
}

// chart is a plot with its legend, drawn below the plot.
type chart struct {
	p   *plot.Plot
	leg plot.Legend
	n   int // legend entries
}

func newChart(title, x, y string) *chart {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return &chart{p: p, leg: plot.NewLegend()}
}

// line adds a line through xy in colour i, with a legend entry unless name
// is empty.
func (c *chart) line(name string, xy plotter.XYs, i int, dashed bool) error {
	if len(xy) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return fmt.Errorf("plot %q: %s: %w", c.p.Title.Text, name, err)
	}
	l.Color = plotutil.Color(i)
	if i < 0 {
		l.Color = color.Gray{Y: 110}
	}
	l.Width = vg.Points(1.8)
	if dashed {
		l.Width = vg.Points(1.2)
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	}
	c.p.Add(l)
	if name != "" {
		c.leg.Add(name, l)
		c.n++
	}
	return nil
}

// writePNG renders the chart with its legend under the plot and writes
// the PNG to w.
func (c *chart) writePNG(w io.Writer) error {
	return simplot.WriteLegendBelow(w, c.p, &c.leg, c.n)
}

// PlotRollout renders, for each run, the share of sites serving the new
// version at 100 % (solid) and at any weight (dashed) against time, with
// the first run's coordinator weight (grey steps), and writes the PNG to w.
func PlotRollout(w io.Writer, title string, runs []*RolloutResult) error {
	c := newChart(title, "time since the version was published (s)", "sites (%)")
	if len(runs) > 0 {
		tl := runs[0].Timeline
		xy := make(plotter.XYs, 0, 2*len(tl))
		for k, s := range tl {
			if k > 0 {
				xy = append(xy, plotter.XY{X: s.At.Seconds(), Y: tl[k-1].Weight})
			}
			xy = append(xy, plotter.XY{X: s.At.Seconds(), Y: s.Weight})
		}
		if err := c.line("traffic share the coordinator gives the new version (%)", xy, -1, false); err != nil {
			return err
		}
	}
	for i, r := range runs {
		full := make(plotter.XYs, len(r.Timeline))
		part := make(plotter.XYs, len(r.Timeline))
		for k, s := range r.Timeline {
			full[k] = plotter.XY{X: s.At.Seconds(), Y: 100 * share(s.Full, r.Sites)}
			part[k] = plotter.XY{X: s.At.Seconds(), Y: 100 * share(s.Serving, r.Sites)}
		}
		name := fmt.Sprintf("%d sites", r.Sites)
		if r.AllOnNew >= 0 {
			name += fmt.Sprintf(" (all at 100%% after %.1fs)", r.AllOnNew.Seconds())
		}
		if err := c.line(name+": serving the new version at 100%", full, i, false); err != nil {
			return err
		}
		if err := c.line(fmt.Sprintf("%d sites: serving it at any weight", r.Sites), part, i, true); err != nil {
			return err
		}
		x := r.Oracle.AllOnNew.Seconds()
		if err := c.line(fmt.Sprintf("%d sites: oracle, all at 100%% after %.1fs", r.Sites, x), plotter.XYs{{X: x, Y: 0}, {X: x, Y: 100}}, i, true); err != nil {
			return err
		}
	}
	c.p.Y.Min, c.p.Y.Max = 0, 102
	return c.writePNG(w)
}

// PlotRollback renders, for each run, the share of sites serving the new
// version against time, with dashed vertical lines at the rollback
// decision and when the last site was back on the old version, and writes
// the PNG to w.
func PlotRollback(w io.Writer, title string, runs []*RolloutResult) error {
	c := newChart(title, "time since the version was published (s)", "sites serving the bad version (%)")
	hi := 1.0
	for _, r := range runs {
		for _, s := range r.Timeline {
			hi = math.Max(hi, 100*share(s.Serving, r.Sites))
		}
	}
	for i, r := range runs {
		xy := make(plotter.XYs, len(r.Timeline))
		for k, s := range r.Timeline {
			xy[k] = plotter.XY{X: s.At.Seconds(), Y: 100 * share(s.Serving, r.Sites)}
		}
		if err := c.line(fmt.Sprintf("%d sites", r.Sites), xy, i, false); err != nil {
			return err
		}
		oracleBack := Never
		if r.RolledBack >= 0 {
			oracleBack = r.RolledBack + r.Oracle.Propagate
		}
		for _, m := range []struct {
			what string
			at   time.Duration
		}{{"rollback decided", r.RolledBack}, {"all back on the old version", r.AllOnOld},
			{"oracle, all back", oracleBack}} {
			if m.at < 0 {
				continue
			}
			x := m.at.Seconds()
			name := fmt.Sprintf("%d sites: %s at %.1fs", r.Sites, m.what, x)
			if err := c.line(name, plotter.XYs{{X: x, Y: 0}, {X: x, Y: hi * 1.02}}, i, true); err != nil {
				return err
			}
		}
	}
	c.p.Y.Min, c.p.Y.Max = 0, hi*1.05
	return c.writePNG(w)
}

// PlotChurn renders the test accuracy per round at every churn level and
// writes the PNG to w.
func PlotChurn(w io.Writer, r *ChurnResult) error {
	series := make([]fedsim.Series, len(r.Levels))
	for i, l := range r.Levels {
		series[i] = fedsim.Series{
			Name: fmt.Sprintf("%.0f%% churn: %.0f%% of sampled clients offline, %.0f%% of the others drop out mid-round",
				100*l.Level, 100*l.Churn.Unavailable, 100*l.Churn.Dropout),
			Points: l.Result.Points,
		}
	}
	var levels []fedsim.Level
	if acc, ok := r.CentralAccuracy(); ok {
		levels = append(levels, fedsim.Level{Name: fmt.Sprintf("oracle: the same model trained centrally on all the data (%d epochs), best %.1f%%", len(r.Central.Points), 100*acc), Value: acc})
	}
	return fedsim.PlotAccuracy(w, fmt.Sprintf("Federated accuracy under client churn (%d training samples)", r.Train), series, levels)
}
