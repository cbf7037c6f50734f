package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) these manifests use. It has no Go type in the
// module graph; decoding into it strictly makes any other field an error,
// so a field added to the manifests must be added here on purpose.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port      string `json:"port"`
			Scheme    string `json:"scheme,omitempty"`
			Path      string `json:"path,omitempty"`
			Interval  string `json:"interval,omitempty"`
			TLSConfig *struct {
				InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
				ServerName         string `json:"serverName,omitempty"`
			} `json:"tlsConfig,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// objects is the decoded output of one kustomization, by kind and name.
type objects struct {
	dir string

	namespaces      map[string]*corev1.Namespace
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
	netpols         map[string]*networkingv1.NetworkPolicy
	roles           map[string]*rbacv1.Role
	clusterRoles    map[string]*rbacv1.ClusterRole
	roleBindings    map[string]*rbacv1.RoleBinding
	crbs            map[string]*rbacv1.ClusterRoleBinding
	crds            map[string]*apiextensionsv1.CustomResourceDefinition
	serviceMonitors map[string]*serviceMonitor

	// metas are every object's metadata, for checks common to all kinds.
	metas []objectMeta
}

// objectMeta identifies one object of the build.
type objectMeta struct {
	apiVersion, kind string
	meta             metav1.ObjectMeta
	clusterScoped    bool
}

func (m objectMeta) String() string {
	return fmt.Sprintf("%s %s/%s", m.apiVersion, m.kind, m.meta.Name)
}

// kustomizeBuild runs `kustomize build dir` in-process and decodes every
// object strictly into its API type; an unknown kind or field, or an
// object twice under one name, is an error.
func kustomizeBuild(dir string) (*objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	o := &objects{
		dir:             dir,
		namespaces:      map[string]*corev1.Namespace{},
		services:        map[string]*corev1.Service{},
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		deployments:     map[string]*appsv1.Deployment{},
		statefulSets:    map[string]*appsv1.StatefulSet{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		netpols:         map[string]*networkingv1.NetworkPolicy{},
		roles:           map[string]*rbacv1.Role{},
		clusterRoles:    map[string]*rbacv1.ClusterRole{},
		roleBindings:    map[string]*rbacv1.RoleBinding{},
		crbs:            map[string]*rbacv1.ClusterRoleBinding{},
		crds:            map[string]*apiextensionsv1.CustomResourceDefinition{},
		serviceMonitors: map[string]*serviceMonitor{},
	}
	var errs []error
	for _, r := range rm.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: to JSON: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		if err := o.add(r.GetApiVersion(), r.GetKind(), js); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s %s: %w", r.GetApiVersion(), r.GetKind(), r.GetName(), err))
		}
	}
	return o, errors.Join(errs...)
}

// put decodes js strictly into a new T and files it under its name.
func put[T any](m map[string]*T, js []byte, meta func(*T) metav1.ObjectMeta) (metav1.ObjectMeta, error) {
	v := new(T)
	if err := decodeStrict(js, v); err != nil {
		return metav1.ObjectMeta{}, err
	}
	md := meta(v)
	if md.Name == "" {
		return md, errors.New("no metadata.name")
	}
	if _, dup := m[md.Name]; dup {
		return md, errors.New("defined twice")
	}
	m[md.Name] = v
	return md, nil
}

// decodeStrict decodes one JSON value into v, failing on unknown fields
// and on trailing data.
func decodeStrict(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("strict decode: trailing data after the object")
	}
	return nil
}

func (o *objects) add(apiVersion, kind string, js []byte) error {
	var (
		md            metav1.ObjectMeta
		err           error
		clusterScoped bool
	)
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		clusterScoped = true
		md, err = put(o.namespaces, js, func(v *corev1.Namespace) metav1.ObjectMeta { return v.ObjectMeta })
	case "v1 Service":
		md, err = put(o.services, js, func(v *corev1.Service) metav1.ObjectMeta { return v.ObjectMeta })
	case "v1 ConfigMap":
		md, err = put(o.configMaps, js, func(v *corev1.ConfigMap) metav1.ObjectMeta { return v.ObjectMeta })
	case "v1 Secret":
		md, err = put(o.secrets, js, func(v *corev1.Secret) metav1.ObjectMeta { return v.ObjectMeta })
	case "v1 ServiceAccount":
		md, err = put(o.serviceAccounts, js, func(v *corev1.ServiceAccount) metav1.ObjectMeta { return v.ObjectMeta })
	case "apps/v1 Deployment":
		md, err = put(o.deployments, js, func(v *appsv1.Deployment) metav1.ObjectMeta { return v.ObjectMeta })
	case "apps/v1 StatefulSet":
		md, err = put(o.statefulSets, js, func(v *appsv1.StatefulSet) metav1.ObjectMeta { return v.ObjectMeta })
	case "autoscaling/v2 HorizontalPodAutoscaler":
		md, err = put(o.hpas, js, func(v *autoscalingv2.HorizontalPodAutoscaler) metav1.ObjectMeta { return v.ObjectMeta })
	case "policy/v1 PodDisruptionBudget":
		md, err = put(o.pdbs, js, func(v *policyv1.PodDisruptionBudget) metav1.ObjectMeta { return v.ObjectMeta })
	case "networking.k8s.io/v1 NetworkPolicy":
		md, err = put(o.netpols, js, func(v *networkingv1.NetworkPolicy) metav1.ObjectMeta { return v.ObjectMeta })
	case "rbac.authorization.k8s.io/v1 Role":
		md, err = put(o.roles, js, func(v *rbacv1.Role) metav1.ObjectMeta { return v.ObjectMeta })
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		clusterScoped = true
		md, err = put(o.clusterRoles, js, func(v *rbacv1.ClusterRole) metav1.ObjectMeta { return v.ObjectMeta })
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		md, err = put(o.roleBindings, js, func(v *rbacv1.RoleBinding) metav1.ObjectMeta { return v.ObjectMeta })
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		clusterScoped = true
		md, err = put(o.crbs, js, func(v *rbacv1.ClusterRoleBinding) metav1.ObjectMeta { return v.ObjectMeta })
	case "apiextensions.k8s.io/v1 CustomResourceDefinition":
		clusterScoped = true
		md, err = put(o.crds, js, func(v *apiextensionsv1.CustomResourceDefinition) metav1.ObjectMeta { return v.ObjectMeta })
	case "monitoring.coreos.com/v1 ServiceMonitor":
		md, err = put(o.serviceMonitors, js, func(v *serviceMonitor) metav1.ObjectMeta { return v.ObjectMeta })
	default:
		return errors.New("unknown kind: add it to the test's decoder (with its Go API type) if it is meant to be there")
	}
	if err != nil {
		return err
	}
	o.metas = append(o.metas, objectMeta{apiVersion: apiVersion, kind: kind, meta: md, clusterScoped: clusterScoped})
	return nil
}

// flagSpec is what `petrel <cmd> -h` says about the command's flags:
// each flag name and whether it is boolean (takes no separate value).
type flagSpec map[string]bool // name → isBool

// usageLine matches a flag line of Go's flag.PrintDefaults: two spaces,
// -name, then an optional value type name; usage text follows on the next
// line (or after a tab for one-letter names).
var usageLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9._-]*)(?: ([A-Za-z0-9_.]+))?$`)

// parseUsage reads the flags out of `petrel <cmd> -h` output.
func parseUsage(out string) (flagSpec, error) {
	spec := flagSpec{}
	for line := range strings.SplitSeq(out, "\n") {
		line, _, _ = strings.Cut(line, "\t")
		m := usageLine.FindStringSubmatch(strings.TrimRight(line, " "))
		if m == nil {
			continue
		}
		spec[m[1]] = m[2] == ""
	}
	if len(spec) == 0 {
		return nil, fmt.Errorf("no flags found in the usage text:\n%s", out)
	}
	return spec, nil
}

// commandFlags runs `bin cmd -h` and parses the flags it lists; ok is
// false when the binary has no such command.
func commandFlags(bin, cmd string) (spec flagSpec, ok bool, err error) {
	out, _ := exec.Command(bin, cmd, "-h").CombinedOutput() // -h exits non-zero by design
	if !strings.Contains(string(out), "Usage of petrel "+cmd+":") {
		return nil, false, nil
	}
	spec, err = parseUsage(string(out))
	return spec, err == nil, err
}

// operatorFlags are the flags of `petrel operator` as its design states
// them, used while the binary has no operator command yet.
var operatorFlags = flagSpec{
	"coordinator":  false,
	"token-file":   false,
	"health-addr":  false,
	"namespace":    false,
	"leader-elect": true,
	"log-level":    false,
	"log-json":     true,
	"sync-period":  false,
}

// parseArgs checks args (after the subcommand) against spec and returns
// the flag values by name (the last one wins, as with package flag). A
// flag the command lacks, a positional argument, or a missing value is an
// error.
func parseArgs(spec flagSpec, args []string) (map[string]string, error) {
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, fmt.Errorf("argument %q is not a flag (petrel's commands take flags only)", a)
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		isBool, known := spec[name]
		if !known {
			return nil, fmt.Errorf("flag --%s is not one the binary has", name)
		}
		switch {
		case hasVal:
		case isBool:
			val = "true"
		case i+1 < len(args):
			i++
			val = args[i]
		default:
			return nil, fmt.Errorf("flag --%s needs a value", name)
		}
		vals[name] = val
	}
	return vals, nil
}

func TestParseArgs(t *testing.T) {
	spec := flagSpec{"listen": false, "log-json": true}
	for _, tc := range []struct {
		args    []string
		want    map[string]string
		wantErr string
	}{
		{args: []string{"--listen=0.0.0.0:1", "--log-json"}, want: map[string]string{"listen": "0.0.0.0:1", "log-json": "true"}},
		{args: []string{"-listen", ":2", "--log-json=false"}, want: map[string]string{"listen": ":2", "log-json": "false"}},
		{args: []string{"--lisen=:1"}, wantErr: "not one the binary has"},
		{args: []string{"--listen"}, wantErr: "needs a value"},
		{args: []string{"extra"}, wantErr: "not a flag"},
	} {
		got, err := parseArgs(spec, tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%q) error %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tc.args, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseArgs(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestParseUsage(t *testing.T) {
	out := "Usage of petrel node:\n  -dev\n    \tdevelopment mode\n  -listen string\n    \tTCP address (default \"127.0.0.1:8000\")\n  -max-hops int\n    \thops\n  -x\tshort\n"
	spec, err := parseUsage(out)
	if err != nil {
		t.Fatal(err)
	}
	want := flagSpec{"dev": true, "listen": false, "max-hops": false, "x": true}
	if fmt.Sprint(spec) != fmt.Sprint(want) {
		t.Errorf("parseUsage = %v, want %v", spec, want)
	}
	if _, err := parseUsage("no flags here"); err == nil {
		t.Error("parseUsage of text without flags: no error")
	}
}

func TestDecodeStrict(t *testing.T) {
	o, err := func() (*objects, error) {
		o := &objects{services: map[string]*corev1.Service{}}
		return o, o.add("v1", "Service", []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"selectr":{}}}`))
	}()
	if err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("a misspelt field decoded without the expected error: %v", err)
	}
	if err := o.add("v1", "Pod", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`)); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("an unexpected kind decoded without the expected error: %v", err)
	}
	if err := o.add("v1", "Service", []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"b"}}`)); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
	if err := o.add("v1", "Service", []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"b"}}`)); err == nil {
		t.Error("a Service defined twice: no error")
	}
}
