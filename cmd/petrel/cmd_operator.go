package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/petrel-mesh/petrel/coordinator/operator"
)

// usageOperator is the usage line of `petrel operator`.
const usageOperator = "petrel operator --coordinator URL --token-file FILE [--namespace NS] [--health-addr :8081] [--metrics-addr 0] [--leader-elect] [--sync-period 30s] [--poll-interval 10s] [--kubeconfig FILE] [--log-level info] [--log-json]"

// runOperator runs the PetrelModel operator (coordinator/operator): it
// watches PetrelModel resources in the cluster (in-cluster configuration,
// $KUBECONFIG or ~/.kube/config, or --kubeconfig) and pushes and rolls out
// their versions through the coordinator's management API.
func runOperator(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel operator", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: %s\n\nflags:\n", usageOperator)
		fs.PrintDefaults()
	}
	defCoord := defaultCoordinatorURL
	if v := strings.TrimSpace(e.getenv("PETREL_COORDINATOR")); v != "" {
		defCoord = v
	}
	coord := fs.String("coordinator", defCoord, "coordinator management API base URL (env PETREL_COORDINATOR)")
	tokenFile := fs.String("token-file", "", "file holding the coordinator bearer token; the token needs the push and read scopes (required)")
	namespace := fs.String("namespace", "", "watch PetrelModels in this namespace only (default: all namespaces)")
	healthAddr := fs.String("health-addr", ":8081", "serve /healthz and /readyz here; 0 disables")
	metricsAddr := fs.String("metrics-addr", "0", "serve the controller's Prometheus metrics (/metrics) here, e.g. :8080; 0 disables")
	leaderElect := fs.Bool("leader-elect", false, "elect one active replica through a Lease (run several replicas)")
	syncPeriod := fs.Duration("sync-period", 30*time.Second, "reconcile every PetrelModel this often even without a change")
	pollInterval := fs.Duration("poll-interval", operator.DefaultPollInterval, "poll a rollout in progress this often")
	maxModel := fs.Int64("max-model-bytes", operator.DefaultMaxModelBytes, "largest model file the operator downloads")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(e.stderr, "petrel operator: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected arguments %q", fs.Args())
	}
	if *tokenFile == "" {
		return fail(2, "--token-file is required")
	}
	for _, a := range []struct{ flag, addr string }{{"--health-addr", *healthAddr}, {"--metrics-addr", *metricsAddr}} {
		if a.addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fail(2, "%s %q: want host:port, :port or 0", a.flag, a.addr)
		}
	}
	switch {
	case *syncPeriod <= 0:
		return fail(2, "--sync-period %v: must be positive", *syncPeriod)
	case *pollInterval < time.Second:
		return fail(2, "--poll-interval %v: must be at least 1s", *pollInterval)
	case *maxModel <= 0:
		return fail(2, "--max-model-bytes %d: must be positive", *maxModel)
	}
	log, err := newLogger(e, *logLevel, *logJSON)
	if err != nil {
		return fail(2, "%v", err)
	}
	tok, err := operator.ReadTokenFile(*tokenFile)
	if err != nil {
		return fail(2, "%v", err)
	}
	cl, err := operator.NewClient(operator.ClientConfig{URL: *coord, Token: tok, UserAgent: "petrel-operator/" + Version})
	if err != nil {
		return fail(2, "--coordinator: %v", err)
	}
	var rc *rest.Config
	if *kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		rc, err = ctrl.GetConfig()
	}
	if err != nil {
		return fail(1, "Kubernetes client configuration: %v", err)
	}
	lr := logr.FromSlogHandler(log.Handler())
	ctrl.SetLogger(lr)
	mgr, err := operator.NewManager(rc, operator.ManagerOptions{
		Reconciler:  operator.Config{Coordinator: cl, PollInterval: *pollInterval, MaxModelBytes: *maxModel},
		Namespace:   *namespace,
		HealthAddr:  *healthAddr,
		MetricsAddr: *metricsAddr,
		LeaderElect: *leaderElect,
		SyncPeriod:  *syncPeriod,
		Logger:      lr,
	})
	if err != nil {
		return fail(1, "%v", err)
	}
	log.Info("operator starting", "coordinator", cl.URL(), "namespace", orAll(*namespace), "leader_elect", *leaderElect, "health", *healthAddr, "metrics", *metricsAddr)
	if err := mgr.Start(ctx); err != nil {
		return fail(1, "%v", err)
	}
	log.Info("operator stopped")
	return 0
}

func orAll(ns string) string {
	if ns == "" {
		return "(all)"
	}
	return ns
}
