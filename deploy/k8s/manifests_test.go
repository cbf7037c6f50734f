package k8s

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/petrel-mesh/petrel/internal/testproc"
	"github.com/petrel-mesh/petrel/node"
)

const (
	namespace   = "petrel"
	petrelImage = "ghcr.io/petrel-mesh/petrel"
	partOfLabel = "app.kubernetes.io/part-of"
	inflight    = "petrel_inference_inflight_requests"
)

// build is one kustomization the tests build, with what differs per
// environment.
type build struct {
	dir              string
	imageTag         string // "" in base: the overlays set it
	hpaMin, hpaMax   int32
	centralPDBMinAv  int32 // 0: maxUnavailable 1 instead
	natsStorage      string
	serviceMonitored bool
}

var builds = []build{
	{dir: "base", hpaMin: 2, hpaMax: 10, natsStorage: "10Gi", serviceMonitored: true},
	{dir: "overlays/dev", imageTag: "dev", hpaMin: 1, hpaMax: 2, natsStorage: "1Gi"},
	{dir: "overlays/production", imageTag: "0.1.0", hpaMin: 3, hpaMax: 30, centralPDBMinAv: 2, natsStorage: "50Gi", serviceMonitored: true},
}

// externalSecrets and externalConfigMaps are created by the operator of
// the cluster (never committed); README.md says how, and the test checks
// that it does.
var (
	externalSecrets    = []string{"petrel-tokens", "petrel-nats-auth", "petrel-nats-leaf-tls", "petrel-tls", "petrel-signing-key", "petrel-operator-token"}
	externalConfigMaps = []string{"petrel-coordinator-pub"}
)

// TestManifests builds every kustomization and checks it; see doc.go.
func TestManifests(t *testing.T) {
	bin := testproc.BuildPetrel(t)
	specs := map[string]flagSpec{}
	for _, cmd := range []string{"node", "coordinator", "operator"} {
		spec, ok, err := commandFlags(bin, cmd)
		if err != nil {
			t.Fatalf("petrel %s -h: %v", cmd, err)
		}
		if !ok {
			if cmd != "operator" {
				t.Fatalf("petrel %s -h printed no usage", cmd)
			}
			spec = operatorFlags // not in the binary yet: its documented flags
		}
		specs[cmd] = spec
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(slices.Clone(externalSecrets), externalConfigMaps...) {
		howto := regexp.MustCompile(`kubectl (-n \S+ )?create (secret (generic|tls)|configmap) ` + regexp.QuoteMeta(name) + `\b`)
		if !howto.Match(readme) {
			t.Errorf("README.md does not say how to create %s (kubectl create ... %s)", name, name)
		}
	}
	for _, b := range builds {
		t.Run(b.dir, func(t *testing.T) {
			o, err := kustomizeBuild(b.dir)
			if err != nil {
				t.Fatal(err)
			}
			c := &checker{t: t, b: b, o: o, specs: specs}
			c.metadata()
			c.noSecrets()
			c.workloads()
			c.services()
			c.autoscaler()
			c.disruptionBudgets()
			c.nats()
			c.networkPolicies()
			c.monitoring()
			c.operatorObjects()
		})
	}
}

type checker struct {
	t     *testing.T
	b     build
	o     *objects
	specs map[string]flagSpec
}

// workload is a Deployment's or StatefulSet's pod template.
type workload struct {
	kind, name string
	tmpl       *corev1.PodTemplateSpec
	claims     []string // StatefulSet volumeClaimTemplates
}

func (c *checker) workloadList() []workload {
	var ws []workload
	for _, n := range sortedKeys(c.o.deployments) {
		ws = append(ws, workload{kind: "Deployment", name: n, tmpl: &c.o.deployments[n].Spec.Template})
	}
	for _, n := range sortedKeys(c.o.statefulSets) {
		s := c.o.statefulSets[n]
		w := workload{kind: "StatefulSet", name: n, tmpl: &s.Spec.Template}
		for _, pvc := range s.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, pvc.Name)
		}
		ws = append(ws, w)
	}
	return ws
}

// podsMatching returns the workloads whose pods sel selects.
func (c *checker) podsMatching(sel labels.Selector) []workload {
	var out []workload
	for _, w := range c.workloadList() {
		if sel.Matches(labels.Set(w.tmpl.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func (c *checker) metadata() {
	if _, ok := c.o.namespaces[namespace]; !ok {
		c.t.Errorf("no Namespace %s", namespace)
	}
	for _, m := range c.o.metas {
		if m.clusterScoped && m.meta.Namespace != "" {
			c.t.Errorf("%s: cluster-scoped but has namespace %q", m, m.meta.Namespace)
		}
		if !m.clusterScoped && m.meta.Namespace != namespace {
			c.t.Errorf("%s: namespace %q, want %q", m, m.meta.Namespace, namespace)
		}
		if m.meta.Labels[partOfLabel] != "petrel" {
			c.t.Errorf("%s: label %s=%q, want petrel", m, partOfLabel, m.meta.Labels[partOfLabel])
		}
	}
	for _, w := range c.workloadList() {
		if w.tmpl.Labels[partOfLabel] != "petrel" {
			c.t.Errorf("%s %s: pod template lacks %s=petrel", w.kind, w.name, partOfLabel)
		}
	}
}

// noSecrets: Secrets are created out of band and never committed.
func (c *checker) noSecrets() {
	for n := range c.o.secrets {
		c.t.Errorf("Secret %s is in the build; Secrets are created out of band (README.md), never committed", n)
	}
}

func (c *checker) workloads() {
	ws := c.workloadList()
	if len(ws) == 0 {
		c.t.Fatal("no workloads in the build")
	}
	for _, want := range []string{"Deployment petrel-central", "Deployment petrel-operator", "StatefulSet petrel-coordinator", "StatefulSet nats"} {
		if !slices.ContainsFunc(ws, func(w workload) bool { return w.kind+" "+w.name == want }) {
			c.t.Errorf("no %s", want)
		}
	}
	petrelCommands := map[string]bool{}
	for _, w := range ws {
		what := w.kind + " " + w.name
		pod := &w.tmpl.Spec
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			c.t.Errorf("%s: pod securityContext.runAsNonRoot is not true", what)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			c.t.Errorf("%s: pod seccompProfile is not RuntimeDefault", what)
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			c.t.Errorf("%s: uses host namespaces", what)
		}
		c.volumes(what, w)
		all := append(slices.Clone(pod.InitContainers), pod.Containers...)
		for i := range all {
			ctr := &all[i]
			cwhat := what + " container " + ctr.Name
			c.containerSecurity(cwhat, psc, ctr)
			c.resources(cwhat, ctr)
			c.references(cwhat, ctr)
			repo, tag := splitImage(ctr.Image)
			if repo == petrelImage {
				cmd := c.petrelContainer(cwhat, w, ctr)
				petrelCommands[cmd] = true
				if c.b.imageTag != "" && tag != c.b.imageTag {
					c.t.Errorf("%s: image %s, want tag %q (set by the overlay's images:)", cwhat, ctr.Image, c.b.imageTag)
				}
				continue
			}
			if tag == "" || tag == "latest" {
				c.t.Errorf("%s: image %q is not pinned to a tag", cwhat, ctr.Image)
			}
		}
	}
	for _, cmd := range []string{"node", "coordinator", "operator"} {
		if !petrelCommands[cmd] {
			c.t.Errorf("no petrel container runs `petrel %s`", cmd)
		}
	}
}

// splitImage splits repo[:tag] (no digests are used here).
func splitImage(image string) (repo, tag string) {
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, ""
}

func (c *checker) containerSecurity(what string, psc *corev1.PodSecurityContext, ctr *corev1.Container) {
	sc := ctr.SecurityContext
	if sc == nil {
		c.t.Errorf("%s: no securityContext", what)
		return
	}
	nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || sc.RunAsNonRoot == nil && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if !nonRoot {
		c.t.Errorf("%s: runAsNonRoot is not true", what)
	}
	uid := sc.RunAsUser
	if uid == nil && psc != nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid == 0 {
		c.t.Errorf("%s: runAsUser is unset or 0 (images may not declare a numeric user)", what)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.t.Errorf("%s: readOnlyRootFilesystem is not true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.t.Errorf("%s: allowPrivilegeEscalation is not false", what)
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.t.Errorf("%s: privileged", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.t.Errorf("%s: capabilities do not drop ALL", what)
	} else if len(sc.Capabilities.Add) > 0 {
		c.t.Errorf("%s: adds capabilities %v", what, sc.Capabilities.Add)
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.t.Errorf("%s: seccompProfile %s, want RuntimeDefault", what, sc.SeccompProfile.Type)
	}
}

func (c *checker) resources(what string, ctr *corev1.Container) {
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := ctr.Resources.Requests[r]
		lim, okLim := ctr.Resources.Limits[r]
		if !okReq || !okLim || req.IsZero() || lim.IsZero() {
			c.t.Errorf("%s: %s request and limit must both be set", what, r)
			continue
		}
		if req.Cmp(lim) > 0 {
			c.t.Errorf("%s: %s request %s exceeds the limit %s", what, r, req.String(), lim.String())
		}
	}
}

// volumes checks that every mount names a volume (or a claim template)
// and that every Secret or ConfigMap a volume names exists.
func (c *checker) volumes(what string, w workload) {
	pod := &w.tmpl.Spec
	names := map[string]bool{}
	for _, v := range pod.Volumes {
		names[v.Name] = true
		switch {
		case v.Secret != nil:
			c.secretExists(what+" volume "+v.Name, v.Secret.SecretName)
		case v.ConfigMap != nil:
			c.configMapExists(what+" volume "+v.Name, v.ConfigMap.Name)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					c.secretExists(what+" volume "+v.Name, s.Secret.Name)
				}
				if s.ConfigMap != nil {
					c.configMapExists(what+" volume "+v.Name, s.ConfigMap.Name)
				}
			}
		case v.EmptyDir != nil:
		default:
			c.t.Errorf("%s: volume %s: only secret, configMap, projected and emptyDir volumes are expected", what, v.Name)
		}
	}
	for _, cl := range w.claims {
		if names[cl] {
			c.t.Errorf("%s: %s is both a volume and a volumeClaimTemplate", what, cl)
		}
		names[cl] = true
	}
	for _, ctr := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, m := range ctr.VolumeMounts {
			if !names[m.Name] {
				c.t.Errorf("%s container %s: mount %s names no volume", what, ctr.Name, m.Name)
			}
		}
	}
}

// references checks env and envFrom references.
func (c *checker) references(what string, ctr *corev1.Container) {
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			c.secretExists(what+" env "+e.Name, r.Name)
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			c.configMapExists(what+" env "+e.Name, r.Name)
			if cm := c.o.configMaps[r.Name]; cm != nil {
				if _, ok := cm.Data[r.Key]; !ok {
					c.t.Errorf("%s env %s: ConfigMap %s has no key %s", what, e.Name, r.Name, r.Key)
				}
			}
		}
	}
	for _, ef := range ctr.EnvFrom {
		if ef.SecretRef != nil {
			c.secretExists(what+" envFrom", ef.SecretRef.Name)
		}
		if ef.ConfigMapRef != nil {
			c.configMapExists(what+" envFrom", ef.ConfigMapRef.Name)
		}
	}
}

func (c *checker) secretExists(what, name string) {
	if _, ok := c.o.secrets[name]; !ok && !slices.Contains(externalSecrets, name) {
		c.t.Errorf("%s: Secret %s is neither in the build nor one of the documented external Secrets %v", what, name, externalSecrets)
	}
}

func (c *checker) configMapExists(what, name string) {
	if _, ok := c.o.configMaps[name]; !ok && !slices.Contains(externalConfigMaps, name) {
		c.t.Errorf("%s: ConfigMap %s is neither in the build nor one of the documented external ConfigMaps %v", what, name, externalConfigMaps)
	}
}

// envNames are the variables a container defines: env entries and the
// keys of the ConfigMaps it takes whole.
func (c *checker) envNames(ctr *corev1.Container) map[string]bool {
	names := map[string]bool{}
	for _, e := range ctr.Env {
		names[e.Name] = true
	}
	for _, ef := range ctr.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := c.o.configMaps[ef.ConfigMapRef.Name]; cm != nil {
				for k := range cm.Data {
					names[ef.Prefix+k] = true
				}
			}
		}
	}
	return names
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// petrelContainer checks a container running the petrel image and returns
// its subcommand.
func (c *checker) petrelContainer(what string, w workload, ctr *corev1.Container) string {
	if len(ctr.Command) > 0 {
		c.t.Errorf("%s: sets command %q; the image's entrypoint is petrel, give the subcommand in args", what, ctr.Command)
	}
	if len(ctr.Args) == 0 {
		c.t.Errorf("%s: no args (subcommand)", what)
		return ""
	}
	cmd := ctr.Args[0]
	spec, ok := c.specs[cmd]
	if !ok {
		c.t.Errorf("%s: subcommand %q is not node, coordinator or operator", what, cmd)
		return cmd
	}
	env := c.envNames(ctr)
	for _, a := range ctr.Args[1:] {
		for _, m := range envRef.FindAllStringSubmatch(a, -1) {
			if !env[m[1]] {
				c.t.Errorf("%s: argument %q uses $(%s), which the container does not define", what, a, m[1])
			}
		}
	}
	vals, err := parseArgs(spec, ctr.Args[1:])
	if err != nil {
		c.t.Errorf("%s: petrel %s: %v", what, cmd, err)
		return cmd
	}
	// Every file or directory named by an argument lies on a mount.
	for name, v := range vals {
		if !strings.HasPrefix(v, "/") {
			continue
		}
		if !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
			return v == m.MountPath || strings.HasPrefix(v, strings.TrimSuffix(m.MountPath, "/")+"/")
		}) {
			c.t.Errorf("%s: --%s=%s is on no volume mount (the root filesystem is read-only and holds no secrets)", what, name, v)
		}
	}
	type probeWant struct{ ready, live, scheme string }
	var (
		addrFlag string
		want     probeWant
	)
	switch cmd {
	case "node":
		addrFlag, want = "listen", probeWant{"/v2/health/ready", "/v2/health/live", "HTTPS"}
		if _, plain := vals["plain-tcp"]; plain {
			want.scheme = "HTTP"
		}
		if vals["role"] == "central" {
			c.central(what, w, vals)
		}
	case "coordinator":
		addrFlag, want = "listen", probeWant{"/healthz", "/healthz", "HTTP"}
		for _, f := range []string{"data-dir", "tokens-file", "nats-url"} {
			if vals[f] == "" {
				c.t.Errorf("%s: petrel coordinator without --%s", what, f)
			}
		}
		if vals["replicas"] != "3" {
			c.t.Errorf("%s: --replicas=%q, want 3 (one per NATS server)", what, vals["replicas"])
		}
	case "operator":
		addrFlag, want = "health-addr", probeWant{"/readyz", "/healthz", "HTTP"}
	}
	addr, ok := vals[addrFlag]
	if !ok {
		c.t.Errorf("%s: no --%s (the default is not reachable from the kubelet)", what, addrFlag)
		return cmd
	}
	port := addrPort(c.t, what+" --"+addrFlag, addr)
	if !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool {
		return p.ContainerPort == port && protocolOf(p.Protocol) == corev1.ProtocolTCP
	}) {
		c.t.Errorf("%s: --%s=%s but no TCP containerPort %d", what, addrFlag, addr, port)
	}
	probes := []struct {
		kind string
		p    *corev1.Probe
		path string
	}{
		{"readinessProbe", ctr.ReadinessProbe, want.ready},
		{"livenessProbe", ctr.LivenessProbe, want.live},
		{"startupProbe", ctr.StartupProbe, ""},
	}
	for _, pr := range probes {
		if pr.p == nil {
			if pr.path != "" {
				c.t.Errorf("%s: no %s", what, pr.kind)
			}
			continue
		}
		g := pr.p.HTTPGet
		if g == nil {
			c.t.Errorf("%s: %s is not an httpGet probe", what, pr.kind)
			continue
		}
		path := pr.path
		if path == "" { // startup: either endpoint will do
			path = want.live
			if g.Path == want.ready {
				path = want.ready
			}
		}
		if g.Path != path {
			c.t.Errorf("%s: %s path %q, want %q (a path petrel %s serves)", what, pr.kind, g.Path, path, cmd)
		}
		if scheme := string(g.Scheme); scheme != want.scheme && (scheme != "" || want.scheme != "HTTP") {
			c.t.Errorf("%s: %s scheme %q, want %s", what, pr.kind, g.Scheme, want.scheme)
		}
		if p, ok := containerPort(ctr, g.Port, corev1.ProtocolTCP); !ok {
			c.t.Errorf("%s: %s port %s is not a declared TCP containerPort", what, pr.kind, g.Port.String())
		} else if p != port {
			c.t.Errorf("%s: %s port %d, but petrel listens on %d (--%s)", what, pr.kind, p, port, addrFlag)
		}
	}
	return cmd
}

// central checks what the central tier's pods need beyond a node's.
func (c *checker) central(what string, w workload, vals map[string]string) {
	for _, f := range []string{"tls-cert", "tls-key", "nats-url", "nats-user", "nats-password-file", "coordinator-key", "id"} {
		if vals[f] == "" {
			c.t.Errorf("%s: central node without --%s", what, f)
		}
	}
	if _, plain := vals["plain-tcp"]; plain {
		c.t.Errorf("%s: central node serves cleartext (--plain-tcp)", what)
	}
	keys := map[string]bool{}
	for _, tsc := range w.tmpl.Spec.TopologySpreadConstraints {
		keys[tsc.TopologyKey] = true
		sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.tmpl.Labels)) {
			c.t.Errorf("%s: topology spread on %s does not select the workload's own pods", what, tsc.TopologyKey)
		}
	}
	for _, k := range []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"} {
		if !keys[k] {
			c.t.Errorf("%s: no topologySpreadConstraint on %s", what, k)
		}
	}
	port := addrPort(c.t, what+" --listen", vals["listen"])
	ctr := petrelContainerOf(w)
	if ctr == nil {
		return
	}
	if _, ok := containerPort(ctr, intstr.FromInt32(port), corev1.ProtocolUDP); !ok {
		c.t.Errorf("%s: no UDP containerPort %d for HTTP/3", what, port)
	}
	if w.tmpl.Annotations["prometheus.io/port"] != strconv.Itoa(int(port)) || w.tmpl.Annotations["prometheus.io/scheme"] != "https" || w.tmpl.Annotations["prometheus.io/path"] != "/metrics" {
		c.t.Errorf("%s: prometheus.io annotations %v do not point at https://:%d/metrics", what, w.tmpl.Annotations, port)
	}
	svc := c.o.services["petrel-central"]
	if svc == nil {
		c.t.Errorf("no Service petrel-central")
		return
	}
	protos := map[corev1.Protocol]bool{}
	for _, sp := range svc.Spec.Ports {
		p, ok := containerPort(ctr, sp.TargetPort, protocolOf(sp.Protocol))
		if ok && p == port {
			protos[protocolOf(sp.Protocol)] = true
		}
	}
	if !protos[corev1.ProtocolTCP] || !protos[corev1.ProtocolUDP] {
		c.t.Errorf("Service petrel-central: want TCP and UDP ports targeting the listen port %d, got %+v", port, svc.Spec.Ports)
	}
}

func petrelContainerOf(w workload) *corev1.Container {
	for i := range w.tmpl.Spec.Containers {
		if repo, _ := splitImage(w.tmpl.Spec.Containers[i].Image); repo == petrelImage {
			return &w.tmpl.Spec.Containers[i]
		}
	}
	return nil
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// containerPort resolves a probe or Service target port against the
// container's declared ports.
func containerPort(ctr *corev1.Container, port intstr.IntOrString, proto corev1.Protocol) (int32, bool) {
	for _, p := range ctr.Ports {
		if protocolOf(p.Protocol) != proto {
			continue
		}
		if port.Type == intstr.String && p.Name == port.StrVal || port.Type == intstr.Int && p.ContainerPort == port.IntVal {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func addrPort(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, ps, err := net.SplitHostPort(addr)
	p, perr := strconv.ParseUint(ps, 10, 16)
	if err != nil || perr != nil || p == 0 {
		t.Errorf("%s=%q: want host:port with a fixed port", what, addr)
		return -1
	}
	return int32(p)
}

func (c *checker) services() {
	for _, n := range sortedKeys(c.o.services) {
		svc := c.o.services[n]
		if len(svc.Spec.Selector) == 0 {
			c.t.Errorf("Service %s: no selector", n)
			continue
		}
		ws := c.podsMatching(labels.SelectorFromSet(svc.Spec.Selector))
		if len(ws) != 1 {
			c.t.Errorf("Service %s: selector %v matches %d workloads, want 1", n, svc.Spec.Selector, len(ws))
			continue
		}
		for _, sp := range svc.Spec.Ports {
			found := false
			for i := range ws[0].tmpl.Spec.Containers {
				if _, ok := containerPort(&ws[0].tmpl.Spec.Containers[i], sp.TargetPort, protocolOf(sp.Protocol)); ok {
					found = true
				}
			}
			if !found {
				c.t.Errorf("Service %s port %s: targetPort %s/%s is no containerPort of %s %s", n, sp.Name, sp.TargetPort.String(), protocolOf(sp.Protocol), ws[0].kind, ws[0].name)
			}
		}
	}
	for _, n := range sortedKeys(c.o.statefulSets) {
		s := c.o.statefulSets[n]
		if c.o.services[s.Spec.ServiceName] == nil {
			c.t.Errorf("StatefulSet %s: serviceName %q is no Service", n, s.Spec.ServiceName)
		}
	}
}

func (c *checker) autoscaler() {
	if len(c.o.hpas) == 0 {
		c.t.Error("no HorizontalPodAutoscaler")
	}
	for _, n := range sortedKeys(c.o.hpas) {
		h := c.o.hpas[n]
		ref := h.Spec.ScaleTargetRef
		d := c.o.deployments[ref.Name]
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil {
			c.t.Errorf("HPA %s: target %s %s %s is no Deployment of the build", n, ref.APIVersion, ref.Kind, ref.Name)
		} else if d.Spec.Replicas != nil {
			c.t.Errorf("HPA %s: Deployment %s sets replicas; every apply would fight the autoscaler", n, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != c.b.hpaMin || h.Spec.MaxReplicas != c.b.hpaMax {
			c.t.Errorf("HPA %s: replicas %v..%d, want %d..%d", n, h.Spec.MinReplicas, h.Spec.MaxReplicas, c.b.hpaMin, c.b.hpaMax)
		}
		var cpu, pods bool
		for _, m := range h.Spec.Metrics {
			switch {
			case m.Type == "Resource" && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU:
				cpu = m.Resource.Target.Type == "Utilization" && m.Resource.Target.AverageUtilization != nil && *m.Resource.Target.AverageUtilization > 0
			case m.Type == "Pods" && m.Pods != nil && m.Pods.Metric.Name == inflight:
				pods = m.Pods.Target.Type == "AverageValue" && m.Pods.Target.AverageValue != nil && m.Pods.Target.AverageValue.Sign() > 0
			}
		}
		if !cpu || !pods {
			c.t.Errorf("HPA %s: want a Resource cpu Utilization metric (have %v) and a Pods %s AverageValue metric (have %v)", n, cpu, inflight, pods)
		}
	}
}

func (c *checker) disruptionBudgets() {
	covered := map[string]bool{}
	for _, n := range sortedKeys(c.o.pdbs) {
		p := c.o.pdbs[n]
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			c.t.Errorf("PDB %s: empty or invalid selector (%v)", n, err)
			continue
		}
		ws := c.podsMatching(sel)
		if len(ws) != 1 {
			c.t.Errorf("PDB %s: selects pods of %d workloads, want 1", n, len(ws))
			continue
		}
		covered[ws[0].name] = true
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			c.t.Errorf("PDB %s: set exactly one of minAvailable and maxUnavailable", n)
		}
		if ws[0].name == "petrel-central" {
			if c.b.centralPDBMinAv > 0 {
				if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != int(c.b.centralPDBMinAv) {
					c.t.Errorf("PDB %s: minAvailable %v, want %d", n, p.Spec.MinAvailable, c.b.centralPDBMinAv)
				}
			} else if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
				c.t.Errorf("PDB %s: maxUnavailable %v, want 1", n, p.Spec.MaxUnavailable)
			}
		}
		if ws[0].name == "nats" && (p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1) {
			c.t.Errorf("PDB %s: maxUnavailable %v, want 1 (JetStream keeps quorum with two of three)", n, p.Spec.MaxUnavailable)
		}
	}
	for _, w := range []string{"nats", "petrel-central"} {
		if !covered[w] {
			c.t.Errorf("no PodDisruptionBudget for %s", w)
		}
	}
}

var natsVar = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

func (c *checker) nats() {
	s := c.o.statefulSets["nats"]
	if s == nil {
		c.t.Error("no StatefulSet nats")
		return
	}
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 3 {
		c.t.Errorf("StatefulSet nats: replicas %v, want 3 (replicated JetStream)", s.Spec.Replicas)
	}
	if len(s.Spec.VolumeClaimTemplates) == 0 {
		c.t.Error("StatefulSet nats: no volumeClaimTemplates for the JetStream store")
	} else {
		got := s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
		if want := resource.MustParse(c.b.natsStorage); got.Cmp(want) != 0 {
			c.t.Errorf("StatefulSet nats: store volume %s, want %s", got.String(), want.String())
		}
	}
	headless := c.o.services[s.Spec.ServiceName]
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		c.t.Errorf("StatefulSet nats: serviceName %q is not a headless Service", s.Spec.ServiceName)
	}
	conf, ctr := c.natsConfig("nats")
	if ctr == nil {
		return
	}
	for i := range 3 {
		route := fmt.Sprintf("nats-route://nats-%d.%s:6222", i, s.Spec.ServiceName)
		if !strings.Contains(conf, route) {
			c.t.Errorf("nats-server.conf: no route %s", route)
		}
	}
	for _, want := range []string{"server_name: $POD_NAME", "jetstream {", "store_dir:", "max_file_store:", "cluster {", "listen: 0.0.0.0:6222", "http_port: 8222", "authorization {"} {
		if !strings.Contains(conf, want) {
			c.t.Errorf("nats-server.conf: no %q", want)
		}
	}
	env := c.envNames(ctr)
	for _, m := range natsVar.FindAllStringSubmatch(conf, -1) {
		if !env[m[1]] {
			c.t.Errorf("nats-server.conf uses $%s, which the nats container does not define", m[1])
		}
	}
	if len(s.Spec.VolumeClaimTemplates) > 0 {
		claim := s.Spec.VolumeClaimTemplates[0].Name
		i := slices.IndexFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == claim })
		if i < 0 {
			c.t.Errorf("nats container: the store volume %s is not mounted", claim)
		} else if mp := strings.TrimSuffix(ctr.VolumeMounts[i].MountPath, "/"); !strings.Contains(conf, "store_dir: "+mp+"/") && !strings.Contains(conf, "store_dir: "+mp+"\n") {
			c.t.Errorf("nats-server.conf: store_dir is not on the store volume mounted at %s", mp)
		}
	}
	anti := s.Spec.Template.Spec.Affinity != nil && s.Spec.Template.Spec.Affinity.PodAntiAffinity != nil
	if !anti && len(s.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		c.t.Error("StatefulSet nats: no pod anti-affinity or topology spread")
	}
}

// natsConfig returns the nats-server.conf the nats container reads, and
// the container.
func (c *checker) natsConfig(name string) (string, *corev1.Container) {
	st := c.o.statefulSets[name]
	var ctr *corev1.Container
	for i := range st.Spec.Template.Spec.Containers {
		if st.Spec.Template.Spec.Containers[i].Name == "nats" {
			ctr = &st.Spec.Template.Spec.Containers[i]
		}
	}
	if ctr == nil {
		c.t.Error("StatefulSet nats: no container named nats")
		return "", nil
	}
	args := append(slices.Clone(ctr.Command), ctr.Args...)
	i := slices.IndexFunc(args, func(a string) bool { return a == "--config" || a == "-c" })
	if i < 0 || i+1 >= len(args) {
		c.t.Errorf("nats container: no --config FILE in %q", args)
		return "", nil
	}
	file := args[i+1]
	for _, m := range ctr.VolumeMounts {
		if filepath.Dir(file) != m.MountPath {
			continue
		}
		for _, v := range st.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm := c.o.configMaps[v.ConfigMap.Name]
				if cm == nil {
					c.t.Errorf("nats: ConfigMap %s is not in the build", v.ConfigMap.Name)
					return "", nil
				}
				conf, ok := cm.Data[filepath.Base(file)]
				if !ok {
					c.t.Errorf("nats: ConfigMap %s has no key %s", cm.Name, filepath.Base(file))
					return "", nil
				}
				return conf, ctr
			}
		}
	}
	c.t.Errorf("nats: --config %s is not in a mounted ConfigMap", file)
	return "", nil
}

func (c *checker) networkPolicies() {
	deny := c.o.netpols["default-deny-ingress"]
	if deny == nil || len(deny.Spec.PodSelector.MatchLabels)+len(deny.Spec.PodSelector.MatchExpressions) != 0 ||
		len(deny.Spec.Ingress) != 0 || !slices.Contains(deny.Spec.PolicyTypes, "Ingress") {
		c.t.Error("no default-deny-ingress NetworkPolicy (empty podSelector, policyTypes [Ingress], no rules)")
	}
	for _, w := range c.workloadList() {
		var selecting []string
		for _, n := range sortedKeys(c.o.netpols) {
			np := c.o.netpols[n]
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				c.t.Errorf("NetworkPolicy %s: %v", n, err)
				continue
			}
			if !sel.Empty() && sel.Matches(labels.Set(w.tmpl.Labels)) {
				selecting = append(selecting, n)
			}
		}
		if len(selecting) == 0 {
			c.t.Errorf("%s %s: no NetworkPolicy of its own", w.kind, w.name)
		}
	}
	// The central tier is open to everyone on TCP and UDP 8443.
	open := map[corev1.Protocol]bool{}
	if np := c.o.netpols["petrel-central"]; np != nil {
		for _, r := range np.Spec.Ingress {
			if len(r.From) != 0 {
				continue
			}
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.IntValue() == 8443 && p.Protocol != nil {
					open[*p.Protocol] = true
				}
			}
		}
	}
	if !open[corev1.ProtocolTCP] || !open[corev1.ProtocolUDP] {
		c.t.Error("NetworkPolicy petrel-central does not admit TCP and UDP 8443 from anywhere")
	}
}

func (c *checker) monitoring() {
	sm := c.o.serviceMonitors["petrel-central"]
	if !c.b.serviceMonitored {
		if sm != nil {
			c.t.Error("ServiceMonitor petrel-central is in a build meant to have none")
		}
		return
	}
	if sm == nil {
		c.t.Error("no ServiceMonitor petrel-central")
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	svc := c.o.services["petrel-central"]
	if err != nil || sel.Empty() || svc == nil || !sel.Matches(labels.Set(svc.Labels)) {
		c.t.Errorf("ServiceMonitor petrel-central: selector does not select Service petrel-central (%v)", err)
		return
	}
	if len(sm.Spec.Endpoints) == 0 {
		c.t.Error("ServiceMonitor petrel-central: no endpoints")
	}
	for _, e := range sm.Spec.Endpoints {
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
			return p.Name == e.Port && protocolOf(p.Protocol) == corev1.ProtocolTCP
		}) {
			c.t.Errorf("ServiceMonitor petrel-central: port %q is no TCP port of the Service", e.Port)
		}
		if e.Scheme != "https" || e.Path != "/metrics" {
			c.t.Errorf("ServiceMonitor petrel-central: scrapes %s://…%s, want https and /metrics", e.Scheme, e.Path)
		}
	}
}

func (c *checker) operatorObjects() {
	crd := c.o.crds["petrelmodels.petrel.dev"]
	if crd == nil {
		c.t.Error("no CustomResourceDefinition petrelmodels.petrel.dev")
	} else {
		served := slices.ContainsFunc(crd.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool { return v.Name == "v1alpha1" && v.Served })
		if crd.Spec.Group != "petrel.dev" || crd.Spec.Names.Kind != "PetrelModel" || crd.Spec.Scope != "Namespaced" || !served {
			c.t.Errorf("CRD petrelmodels.petrel.dev: group %s kind %s scope %s, v1alpha1 served %v; want petrel.dev PetrelModel Namespaced true",
				crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Scope, served)
		}
	}
	d := c.o.deployments["petrel-operator"]
	if d == nil {
		return
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" || c.o.serviceAccounts[sa] == nil {
		c.t.Errorf("Deployment petrel-operator: serviceAccountName %q is no ServiceAccount of the build", sa)
	}
	bound := false
	for _, b := range c.o.crbs {
		if b.RoleRef.Kind == "ClusterRole" && c.o.clusterRoles[b.RoleRef.Name] == nil {
			c.t.Errorf("ClusterRoleBinding %s: ClusterRole %s is not in the build", b.Name, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa {
				if s.Namespace != namespace {
					c.t.Errorf("ClusterRoleBinding %s: subject %s in namespace %q, want %q", b.Name, s.Name, s.Namespace, namespace)
				}
				bound = true
			}
		}
	}
	for _, b := range c.o.roleBindings {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa {
				bound = true
			}
		}
	}
	if !bound {
		c.t.Errorf("ServiceAccount %s is bound to no role", sa)
	}
}

// TestNATSConfig runs the real nats-server on every build's configuration
// in test mode (-t), with the environment the pod gives it.
func TestNATSConfig(t *testing.T) {
	natsServer := testproc.NATSServer(t)
	for _, b := range builds {
		t.Run(b.dir, func(t *testing.T) {
			o, err := kustomizeBuild(b.dir)
			if err != nil {
				t.Fatal(err)
			}
			c := &checker{t: t, b: b, o: o}
			if o.statefulSets["nats"] == nil {
				t.Fatal("no StatefulSet nats")
			}
			conf, ctr := c.natsConfig("nats")
			if ctr == nil {
				t.FailNow()
			}
			file := filepath.Join(t.TempDir(), "nats-server.conf")
			if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			// The leaf node TLS files come from a Secret: a generated
			// pair stands in for it.
			if strings.Contains(conf, "/etc/nats-tls/") {
				tlsDir := t.TempDir()
				_, certPEM, keyPEM, err := node.DevCertificate("nats-leaf.example")
				if err != nil {
					t.Fatal(err)
				}
				for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
					if err := os.WriteFile(filepath.Join(tlsDir, name), b, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				conf = strings.ReplaceAll(conf, "/etc/nats-tls/", tlsDir+"/")
			}
			if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(natsServer, "-t", "-c", file)
			cmd.Env = append(os.Environ(), "POD_NAME=nats-0")
			for _, e := range ctr.Env {
				v := e.Value
				if e.ValueFrom != nil {
					v = "placeholder-" + strings.ToLower(e.Name) // secrets: any value
				}
				cmd.Env = append(cmd.Env, e.Name+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("nats-server -t rejects the configuration: %v\n%s\n--- config ---\n%s", err, out, conf)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
