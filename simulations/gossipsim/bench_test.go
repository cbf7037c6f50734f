package gossipsim

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/node/mesh"
)

var (
	benchMembers = flag.Int("gossipsim.members", 1000, "BenchmarkGossip1000: cluster size")
	benchScale   = flag.Float64("gossipsim.scale", 8, "BenchmarkGossip1000: Config.TimeScale")
	benchLoss    = flag.Float64("gossipsim.loss", DefaultLoss, "BenchmarkGossip1000: packet loss")
	benchWorld   = flag.Bool("gossipsim.world", false, "BenchmarkGossip1000: WorldNetwork instead of DefaultNetwork")
	benchProfile = flag.String("gossipsim.profile", "lan", "BenchmarkGossip1000: node/mesh profile")
	benchOut     = flag.String("gossipsim.out", "", "BenchmarkGossip1000: directory for the CSV files and the plot")
)

// BenchmarkGossip1000 runs the full simulation on 1,000 members (LAN
// profile, eight European metros, 0.5 % loss, encrypted, 3-model
// catalogs) and reports its figures in deployment time:
//
//	go test -run '^$' -bench BenchmarkGossip1000 -benchtime 1x -timeout 60m ./simulations/gossipsim/ \
//	    -args -gossipsim.out docs/sim/gossip
//
// It takes about half an hour on a shared 2-core machine: forming the
// cluster makes every member gossip about every other one (N² messages,
// each retransmitted 4·log10(N+1) times), and at TimeScale 8 (the default
// here; at 4 the 2-core machine fell behind, timers fired seconds late
// and members were falsely declared dead) that drain lasts about 25
// minutes. On an idle machine with more cores -gossipsim.scale 2 is
// enough; watch lag-p99-ms and false-failures. -gossipsim.members 500
// -gossipsim.scale 4 takes about 6 minutes. Each member holds every other
// member's catalog, so the heap grows with N²·CatalogModels.
func BenchmarkGossip1000(b *testing.B) {
	cfg := Config{
		Members:       *benchMembers,
		Seed:          1,
		TimeScale:     *benchScale,
		CatalogModels: 3,
		JoinTimeout:   60 * time.Second,
		FailTimeout:   180 * time.Second,
		SettleTimeout: 15 * time.Minute,
	}
	cfg.Network = DefaultNetwork()
	if *benchWorld {
		cfg.Network = WorldNetwork()
	}
	cfg.Network.Loss = *benchLoss
	cfg.Profile = mesh.Profile(*benchProfile)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for b.Loop() {
		res, err := Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Log("\n" + res.Summary())
		ms := func(c *Convergence, f float64) float64 {
			if t, ok := c.At(f); ok {
				return float64(t) / float64(time.Millisecond)
			}
			return -1 // not reached
		}
		b.ReportMetric(ms(&res.Join, 0.99), "join-p99-ms")
		b.ReportMetric(ms(&res.Join, 1), "join-all-ms")
		b.ReportMetric(ms(&res.Failure, 0.99), "fail-p99-ms")
		b.ReportMetric(ms(&res.Failure, 1), "fail-all-ms")
		b.ReportMetric(ms(&res.JoinOracle, 0.99), "join-oracle-p99-ms")
		b.ReportMetric(ms(&res.FailureOracle, 0.99), "fail-oracle-p99-ms")
		b.ReportMetric(res.Bandwidth.Sent.Mean, "sent-B/s-mean")
		b.ReportMetric(res.Bandwidth.Sent.P99, "sent-B/s-p99")
		b.ReportMetric(res.Bandwidth.Recv.Mean, "recv-B/s-mean")
		b.ReportMetric(res.Bandwidth.Recv.P99, "recv-B/s-p99")
		b.ReportMetric(res.Bandwidth.SteadySentMean, "steady-sent-B/s-mean")
		b.ReportMetric(float64(res.FalseFailures), "false-failures")
		b.ReportMetric(float64(res.SchedulerLag.P99)/float64(time.Millisecond), "lag-p99-ms")
		b.ReportMetric(res.Settled.Seconds(), "settle-s")
		if *benchOut != "" {
			if err := res.WriteCSV(*benchOut); err != nil {
				b.Fatal(err)
			}
			if err := res.WritePlot(*benchOut); err != nil {
				b.Fatal(err)
			}
		}
	}
}
