package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
)

// LeaderElectionID names the Lease that operator replicas elect a leader
// with.
const LeaderElectionID = "petrel-operator.petrel.dev"

// ManagerOptions configure the operator's controller manager.
type ManagerOptions struct {
	// Reconciler configures the PetrelModel reconciler.
	Reconciler Config
	// Namespace limits the operator to one namespace; "" watches all.
	Namespace string
	// HealthAddr serves /healthz and /readyz; "0" disables them.
	HealthAddr string
	// MetricsAddr serves the controller metrics (/metrics); "0" disables
	// them.
	MetricsAddr string
	// LeaderElect makes replicas elect one active leader through a Lease
	// (LeaderElectionID) in LeaderElectionNamespace (default: the pod's
	// namespace).
	LeaderElect             bool
	LeaderElectionNamespace string
	// SyncPeriod is how often every PetrelModel is reconciled even without
	// a change (drift correction); 0 keeps controller-runtime's default.
	SyncPeriod time.Duration
	// Logger is controller-runtime's logger.
	Logger logr.Logger
	// SkipNameValidation lets more than one manager in a process run the
	// PetrelModel controller (controller-runtime refuses duplicate
	// controller names, whose metrics would collide). Tests only.
	SkipNameValidation bool
}

// NewScheme returns a scheme with the Kubernetes built-in types and
// PetrelModel.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("operator: scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("operator: scheme: %w", err)
	}
	return s, nil
}

// NewManager builds a controller manager for the cluster rc points at,
// with the PetrelModel reconciler, /healthz (always ok while the process
// runs) and /readyz (ok when the coordinator answers GET /healthz). Start
// it with its Start method; it runs until the context ends.
func NewManager(rc *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	if rc == nil {
		return nil, errors.New("operator: no Kubernetes client configuration")
	}
	if o.SyncPeriod < 0 {
		return nil, fmt.Errorf("operator: sync period %v is negative", o.SyncPeriod)
	}
	if err := o.Reconciler.Validate(); err != nil {
		return nil, err
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	mo := ctrl.Options{
		Scheme:                        scheme,
		Logger:                        o.Logger,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.HealthAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	}
	if o.Namespace != "" {
		mo.Cache.DefaultNamespaces = map[string]cache.Config{o.Namespace: {}}
		if mo.LeaderElectionNamespace == "" {
			mo.LeaderElectionNamespace = o.Namespace
		}
	}
	if o.SyncPeriod > 0 {
		sp := o.SyncPeriod
		mo.Cache.SyncPeriod = &sp
	}
	if o.SkipNameValidation {
		skip := true
		mo.Controller.SkipNameValidation = &skip
	}
	mgr, err := ctrl.NewManager(rc, mo)
	if err != nil {
		return nil, fmt.Errorf("operator: controller manager: %w", err)
	}
	r, err := NewReconciler(mgr.GetClient(), o.Reconciler)
	if err != nil {
		return nil, err
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("operator: set up the PetrelModel controller: %w", err)
	}
	if o.HealthAddr != "0" && o.HealthAddr != "" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return nil, fmt.Errorf("operator: health check: %w", err)
		}
		coord := o.Reconciler.Coordinator
		if err := mgr.AddReadyzCheck("coordinator", func(req *http.Request) error {
			ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
			defer cancel()
			return coord.Healthz(ctx)
		}); err != nil {
			return nil, fmt.Errorf("operator: readiness check: %w", err)
		}
	}
	return mgr, nil
}
