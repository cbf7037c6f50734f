package gossipsim

import (
	"bufio"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Files written by WriteCSV and WritePlot.
const (
	JoinCSV        = "gossip_join.csv"
	FailureCSV     = "gossip_failure.csv"
	BandwidthCSV   = "gossip_bandwidth.csv"
	SummaryCSV     = "gossip_summary.csv"
	ConvergencePNG = "gossip_convergence.png"
)

// WriteCSV writes the result into dir (created if missing):
//
//   - gossip_join.csv and gossip_failure.csv: "rank,t_ms,fraction", one row
//     per observer that saw the change, in order, with the share of all
//     observers that had seen it by then;
//   - gossip_bandwidth.csv: each member's steady-state rates;
//   - gossip_summary.csv: "metric,value" with every headline figure.
func (r *Result) WriteCSV(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gossipsim: %w", err)
	}
	write := func(name string, fill func(w *bufio.Writer)) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("gossipsim: %w", err)
		}
		bw := bufio.NewWriter(f)
		fill(bw)
		if err := bw.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("gossipsim: write %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("gossipsim: write %s: %w", name, err)
		}
		return nil
	}
	// One row per observer that saw the change, with the oracle's time
	// for the same rank (the oracle's observers are the same members).
	curve := func(c, oracle *Convergence) func(*bufio.Writer) {
		return func(w *bufio.Writer) {
			fmt.Fprintln(w, "rank,t_ms,fraction,oracle_t_ms")
			for i, t := range c.Times {
				o := ""
				if i < len(oracle.Times) {
					o = msStr(oracle.Times[i])
				}
				fmt.Fprintf(w, "%d,%s,%s,%s\n", i+1, msStr(t), num(float64(i+1)/float64(c.Observers)), o)
			}
		}
	}
	if err := write(JoinCSV, curve(&r.Join, &r.JoinOracle)); err != nil {
		return err
	}
	if err := write(FailureCSV, curve(&r.Failure, &r.FailureOracle)); err != nil {
		return err
	}
	if err := write(BandwidthCSV, func(w *bufio.Writer) {
		fmt.Fprintln(w, "member,region,sent_Bps,recv_Bps,packet_sent_Bps,stream_sent_Bps,packet_recv_Bps,stream_recv_Bps,packets_sent_ps,packets_recv_ps,packets_lost_ps,packets_dropped_ps,streams_opened_ps")
		for _, m := range r.Bandwidth.PerMember {
			fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", m.ID, m.Region,
				num(m.Sent), num(m.Recv), num(m.PacketSent), num(m.StreamSent), num(m.PacketBytesRecvPS), num(m.StreamBytesRecvPS),
				num(m.PacketsSentPerSec), num(m.PacketsRecvPerSec), num(m.PacketsLostPerSec), num(m.PacketsDroppedPerS), num(m.StreamsOpenedPerS))
		}
	}); err != nil {
		return err
	}
	return write(SummaryCSV, func(w *bufio.Writer) {
		fmt.Fprintln(w, "metric,value")
		for _, kv := range r.summaryRows() {
			fmt.Fprintf(w, "%s,%s\n", kv[0], kv[1])
		}
	})
}

// summaryRows returns the headline figures as (metric, value) pairs.
func (r *Result) summaryRows() [][2]string {
	at := func(c *Convergence, f float64) string {
		if t, ok := c.At(f); ok {
			return msStr(t)
		}
		return "not reached"
	}
	lossRate := 0.0
	if r.Measured.PacketsSent > 0 {
		lossRate = float64(r.Measured.PacketsLost) / float64(r.Measured.PacketsSent)
	}
	b := &r.Bandwidth
	return [][2]string{
		{"members", strconv.Itoa(r.Config.Members)},
		{"profile", string(r.Timing.Profile)},
		{"time_scale", num(r.Config.TimeScale)},
		{"probe_interval_ms", msStr(r.Timing.ProbeInterval)},
		{"gossip_interval_ms", msStr(r.Timing.GossipInterval)},
		{"encrypted", strconv.FormatBool(r.Timing.Encrypted)},
		{"regions", strconv.Itoa(len(r.Config.Network.Regions))},
		{"loss_configured", num(r.Config.Network.Loss)},
		{"loss_measured", num(lossRate)},
		{"catalog_models", strconv.Itoa(r.Config.CatalogModels)},
		{"bootstrap_ms", msStr(r.Bootstrap)},
		{"settled", strconv.FormatBool(r.IsSettled)},
		{"settled_ms", msStr(r.Settled)},
		{"join_call_ms", msStr(r.JoinCall)},
		{"join_observers", strconv.Itoa(r.Join.Observers)},
		{"join_seen", strconv.Itoa(len(r.Join.Times))},
		{"join_p50_ms", at(&r.Join, 0.5)},
		{"join_p99_ms", at(&r.Join, 0.99)},
		{"join_all_ms", at(&r.Join, 1)},
		{"join_oracle_p50_ms", at(&r.JoinOracle, 0.5)},
		{"join_oracle_p99_ms", at(&r.JoinOracle, 0.99)},
		{"join_oracle_all_ms", at(&r.JoinOracle, 1)},
		{"failure_observers", strconv.Itoa(r.Failure.Observers)},
		{"failure_seen", strconv.Itoa(len(r.Failure.Times))},
		{"failure_p50_ms", at(&r.Failure, 0.5)},
		{"failure_p99_ms", at(&r.Failure, 0.99)},
		{"failure_all_ms", at(&r.Failure, 1)},
		{"failure_oracle_p50_ms", at(&r.FailureOracle, 0.5)},
		{"failure_oracle_p99_ms", at(&r.FailureOracle, 0.99)},
		{"failure_oracle_all_ms", at(&r.FailureOracle, 1)},
		{"false_failures", strconv.Itoa(r.FalseFailures)},
		{"dropped_events", strconv.FormatUint(r.DroppedEvents, 10)},
		{"bandwidth_window_ms", msStr(b.Window)},
		{"sent_Bps_mean", num(b.Sent.Mean)},
		{"sent_Bps_p50", num(b.Sent.P50)},
		{"sent_Bps_p99", num(b.Sent.P99)},
		{"sent_Bps_max", num(b.Sent.Max)},
		{"recv_Bps_mean", num(b.Recv.Mean)},
		{"recv_Bps_p50", num(b.Recv.P50)},
		{"recv_Bps_p99", num(b.Recv.P99)},
		{"recv_Bps_max", num(b.Recv.Max)},
		{"packet_sent_Bps_mean", num(b.PacketSentMean)},
		{"stream_sent_Bps_mean", num(b.StreamSentMean)},
		{"packets_sent_ps_mean", num(b.PacketsPerSecMean)},
		{"pushpull_state_bytes", strconv.FormatUint(b.PushPullStateBytes, 10)},
		{"pushpull_period_ms", msStr(b.PushPullPeriod)},
		{"pushpull_Bps", num(b.PushPullBps)},
		{"steady_sent_Bps_mean", num(b.SteadySentMean)},
		{"scheduler_lag_p99_ms", msStr(r.SchedulerLag.P99)},
		{"scheduler_lag_max_ms", msStr(r.SchedulerLag.Max)},
	}
}

// Summary formats the headline figures, one "metric value" per line.
func (r *Result) Summary() string {
	var out []byte
	for _, kv := range r.summaryRows() {
		out = fmt.Appendf(out, "%-22s %s\n", kv[0], kv[1])
	}
	return string(out)
}

// WritePlot writes ConvergencePNG into dir (created if missing).
func (r *Result) WritePlot(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gossipsim: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, ConvergencePNG))
	if err != nil {
		return fmt.Errorf("gossipsim: %w", err)
	}
	if err := r.Plot(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("gossipsim: write %s: %w", ConvergencePNG, err)
	}
	return nil
}

// Plot renders two panels as a PNG to w: the share of members that list
// the joined member against time since the join, and the share that list
// the killed member as dead against time since the kill, each with 99 %
// marked.
func (r *Result) Plot(w io.Writer) error {
	const width, height = 12 * vg.Inch, 5 * vg.Inch
	setup := fmt.Sprintf("%d members, %s, %d regions, %.1f%% loss", r.Config.Members, r.Timing.Profile, len(r.Config.Network.Regions), 100*r.Config.Network.Loss)
	join, err := convergencePlot("Join seen ("+setup+")", &r.Join, &r.JoinOracle, 0)
	if err != nil {
		return err
	}
	fail, err := convergencePlot("Failure detected ("+setup+")", &r.Failure, &r.FailureOracle, 1)
	if err != nil {
		return err
	}
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(12), PadY: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadTop: vg.Points(6), PadBottom: vg.Points(6)}
	plots := [][]*plot.Plot{{join, fail}}
	canvases := plot.Align(plots, tiles, dc)
	join.Draw(canvases[0][0])
	fail.Draw(canvases[0][1])
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("gossipsim: write plot: %w", err)
	}
	return nil
}

// convergencePlot draws one cumulative curve (a step function of the
// observers' times) with its oracle (dashed) and the 99 % level.
func convergencePlot(title string, c, oracle *Convergence, colour int) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.X.Label.Text = "seconds since the change"
	p.Y.Label.Text = "share of members (%)"
	p.Add(plotter.NewGrid())
	steps := func(c *Convergence) plotter.XYs {
		xy := plotter.XYs{{X: 0, Y: 0}}
		for i, t := range c.Times {
			y := 100 * float64(i) / float64(c.Observers)
			xy = append(xy, plotter.XY{X: t.Seconds(), Y: y}, plotter.XY{X: t.Seconds(), Y: 100 * float64(i+1) / float64(c.Observers)})
		}
		return xy
	}
	xy := steps(c)
	maxX := 1.0
	if len(c.Times) > 0 {
		maxX = c.Times[len(c.Times)-1].Seconds() * 1.05
	}
	if len(c.Times) < c.Observers {
		maxX = c.Timeout.Seconds()
	}
	xy = append(xy, plotter.XY{X: maxX, Y: xy[len(xy)-1].Y})
	line, err := plotter.NewLine(xy)
	if err != nil {
		return nil, fmt.Errorf("gossipsim: plot %q: %w", title, err)
	}
	line.Color = plotutil.Color(colour)
	line.Width = vg.Points(1.8)
	p.Add(line)
	p.Legend.Add(c.Target, line)
	dashed := func(xy plotter.XYs, col color.Color, width vg.Length, dashes []vg.Length, label string) error {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("gossipsim: plot %q: %w", title, err)
		}
		l.Color, l.Width, l.Dashes = col, width, dashes
		p.Add(l)
		p.Legend.Add(label, l)
		return nil
	}
	if len(oracle.Times) > 0 {
		oxy := steps(oracle)
		oxy = append(oxy, plotter.XY{X: maxX, Y: oxy[len(oxy)-1].Y})
		label := "oracle"
		if t, ok := oracle.At(0.99); ok {
			label = fmt.Sprintf("oracle (99 %% at %.3f s)", t.Seconds())
		}
		if err := dashed(oxy, color.Black, vg.Points(1.2), []vg.Length{vg.Points(2), vg.Points(2)}, label); err != nil {
			return nil, err
		}
	}
	label := "99 %"
	if t, ok := c.At(0.99); ok {
		label = fmt.Sprintf("99 %% at %.2f s", t.Seconds())
	}
	if err := dashed(plotter.XYs{{X: 0, Y: 99}, {X: maxX, Y: 99}}, color.Gray{Y: 110}, vg.Points(1), []vg.Length{vg.Points(6), vg.Points(4)}, label); err != nil {
		return nil, err
	}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.YOffs = vg.Points(14)
	p.Legend.XOffs = -vg.Points(8)
	p.X.Min, p.X.Max = 0, maxX
	p.Y.Min, p.Y.Max = 0, 102
	return p, nil
}

// msStr formats d in milliseconds with microsecond precision.
func msStr(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// num formats v in its shortest exact form.
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
