package operator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/petrel-mesh/petrel/coordinator/operator"
	"github.com/petrel-mesh/petrel/coordinator/operator/api/v1alpha1"
	"github.com/petrel-mesh/petrel/internal/testproc"
)

// startAPIServer starts a real kube-apiserver and etcd (built by
// scripts/setup.sh into .cache/envtest) through controller-runtime's
// envtest, with the committed PetrelModel CRD installed.
func startAPIServer(t *testing.T) *envtest.Environment {
	t.Helper()
	root := testproc.ModuleRoot(t)
	assets := filepath.Join(root, ".cache", "envtest")
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Fatalf("the API server tests need %s in %s (make setup builds it): %v", bin, assets, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "deploy", "k8s", "base", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the API server: %v", err)
		}
	})
	return env
}

// TestOperatorAgainstAPIServer runs the operator as it runs in a cluster
// (a manager with watches and leader election) against a real API server
// and a real coordinator: the API server enforces the CRD's schema and
// CEL rules, a PetrelModel is pushed and deployed, a second version rolls
// out and is promoted, and the status the operator writes through the
// status subresource says so at each step.
func TestOperatorAgainstAPIServer(t *testing.T) {
	env := startAPIServer(t)
	w := newWorld(t)
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}

	// The schema: invalid resources never reach the operator.
	bad := []struct {
		name   string
		mutate func(*v1alpha1.PetrelModelSpec)
		want   string
	}{
		{"sha256 not hex", func(s *v1alpha1.PetrelModelSpec) { s.Artifact.Model.SHA256 = "xyz" }, "sha256"},
		{"last step not 100", func(s *v1alpha1.PetrelModelSpec) { s.Rollout = &v1alpha1.RolloutPolicy{Steps: []int32{10, 50}} }, "100"},
		{"steps not increasing", func(s *v1alpha1.PetrelModelSpec) { s.Rollout = &v1alpha1.RolloutPolicy{Steps: []int32{50, 10, 100}} }, "increas"},
		{"no model", func(s *v1alpha1.PetrelModelSpec) { s.Model = "" }, "model"},
	}
	for i, tc := range bad {
		spec := w.spec("schema", fmt.Sprintf("v%d", i+1), 9)
		tc.mutate(&spec)
		pm := &v1alpha1.PetrelModel{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bad-%d", i), Namespace: namespace}, Spec: spec}
		err := kube.Create(ctx, pm)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: create returned %v, want Invalid mentioning %q", tc.name, err, tc.want)
		}
	}

	mgr, err := operator.NewManager(env.Config, operator.ManagerOptions{
		Reconciler: operator.Config{Coordinator: w.cl, PollInterval: 500 * time.Millisecond,
			Fetcher: &operator.HTTPFetcher{Timeout: 10 * time.Second}, MaxModelBytes: 1 << 20},
		HealthAddr: "0", MetricsAddr: "0",
		LeaderElect: true, LeaderElectionNamespace: namespace,
		Logger:             logr.Discard(),
		SkipNameValidation: true, // TestNewManager builds one too
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	key := types.NamespacedName{Namespace: namespace, Name: "vision"}
	spec := w.spec("vision", "v1", 1)
	spec.Rollout = canary()
	if err := kube.Create(ctx, &v1alpha1.PetrelModel{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: namespace}, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	waitPhase := func(want v1alpha1.Phase, what string) *v1alpha1.PetrelModel {
		t.Helper()
		var pm v1alpha1.PetrelModel
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if err := kube.Get(ctx, key, &pm); err != nil {
				t.Fatal(err)
			}
			if pm.Status.Phase == want && pm.Status.ObservedGeneration == pm.Generation {
				return &pm
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: phase %q (generation %d, observed %d), conditions %+v, last error %q; want %q",
			what, pm.Status.Phase, pm.Generation, pm.Status.ObservedGeneration, pm.Status.Conditions, pm.Status.LastError, want)
		return nil
	}

	// The first version is pushed and deployed.
	pm := waitPhase(v1alpha1.PhaseReady, "v1")
	if c := meta.FindStatusCondition(pm.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != pm.Generation {
		t.Fatalf("v1 Ready condition %+v", c)
	}
	if pm.Status.PushedVersion != "v1" || pm.Status.PushedDigest != "sha256:"+spec.Artifact.Model.SHA256 {
		t.Fatalf("v1 pushed %s %s", pm.Status.PushedVersion, pm.Status.PushedDigest)
	}

	// A new version: the operator sees the change through its watch and
	// rolls it out as a canary.
	m2 := w.spec("vision", "v2", 2)
	pm.Spec.Version, pm.Spec.Artifact = "v2", m2.Artifact
	if err := kube.Update(ctx, pm); err != nil {
		t.Fatal(err)
	}
	pm = waitPhase(v1alpha1.PhaseProgressing, "v2 rolling out")
	if rs := pm.Status.Rollout; rs == nil || rs.From != "v1" || rs.Weight != "10%" {
		t.Fatalf("v2 rollout status %+v, want from v1 at 10%%", pm.Status.Rollout)
	}
	ro, err := w.direct.Rollout(ctx, "vision")
	if err != nil || ro.Spec.To != "v2" {
		t.Fatalf("the coordinator's rollout: %+v, %v", ro, err)
	}

	// Promoted at the coordinator (nodes and traffic would do it): the
	// operator's poll brings the resource to Ready.
	if _, err := w.direct.RolloutAction(ctx, "vision", "promote"); err != nil {
		t.Fatal(err)
	}
	pm = waitPhase(v1alpha1.PhaseReady, "v2 promoted")
	if pm.Status.PushedVersion != "v2" || pm.Status.Rollout == nil || pm.Status.Rollout.State != "promoted" {
		t.Fatalf("after promotion: pushed %s, rollout %+v", pm.Status.PushedVersion, pm.Status.Rollout)
	}
	if w.proxy.get("push") != 2 || w.proxy.get("rollout") != 1 {
		t.Fatalf("requests %v; want two pushes and one rollout", w.proxy)
	}
}
