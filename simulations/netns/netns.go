package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// ipTimeout bounds one invocation of the ip command; they take
	// milliseconds, so only a wedged system reaches it.
	ipTimeout = 20 * time.Second

	// maxPrefixLen and maxHostNameLen keep namespace names short and
	// readable in `ip netns list`.
	maxPrefixLen   = 16
	maxHostNameLen = 32

	// probePrefix names the namespaces Available creates.
	probePrefix = "netnsprobe"

	// capNetAdmin and capSysAdmin are the capability bits `ip netns`
	// needs (linux/capability.h).
	capNetAdmin = 12
	capSysAdmin = 21
)

// tenNet is the only address range labs may use.
var tenNet = netip.MustParsePrefix("10.0.0.0/8")

// labSeq numbers the labs of this process.
var labSeq atomic.Uint64

var availableOnce = sync.OnceValue(probe)

// Available reports whether this process can build labs: it runs on
// Linux as root (or with CAP_SYS_ADMIN and CAP_NET_ADMIN), the ip command
// from iproute2 is installed, and creating a namespace with a veth pair
// works. The error says what is missing. The answer is computed once per
// process.
func Available() error { return availableOnce() }

func probe() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("netns: network namespaces need Linux, this is %s", runtime.GOOS)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netns: the ip command is not installed or not in PATH (install iproute2): %w", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("netns: cannot read capabilities: %w", err)
	}
	caps, err := parseCapEff(string(status))
	if err != nil {
		return err
	}
	if caps&(1<<capSysAdmin) == 0 || caps&(1<<capNetAdmin) == 0 {
		return fmt.Errorf("netns: need CAP_SYS_ADMIN and CAP_NET_ADMIN to create network namespaces (run as root); euid %d has effective capabilities %#x", os.Geteuid(), caps)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("netns: kernel without network namespace support (CONFIG_NET_NS): %w", err)
	}
	if err := cleanStale(probePrefix); err != nil {
		return err
	}
	ns := fmt.Sprintf("%s-%d-%d-probe", probePrefix, os.Getpid(), labSeq.Add(1))
	if _, err := runIP("netns", "add", ns); err != nil {
		return fmt.Errorf("netns: cannot create a network namespace: %w", err)
	}
	_, vethErr := runIP("-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
	if err := removeNamespace(ns); err != nil {
		return fmt.Errorf("netns: cannot delete the probe namespace: %w", err)
	}
	if vethErr != nil {
		return fmt.Errorf("netns: cannot create veth interfaces (CONFIG_VETH): %w", vethErr)
	}
	return nil
}

// Lab is a set of hosts (network namespaces) and the links between them.
// Its methods are safe for concurrent use. Close it when done.
type Lab struct {
	prefix string

	mu     sync.Mutex
	hosts  map[string]*Host
	order  []*Host
	closed bool
}

// Host is one network namespace of a Lab.
type Host struct {
	lab    *Lab
	name   string
	ns     string
	nextIf int // guarded by lab.mu
}

// New creates an empty lab. prefix, 1 to 16 lower-case letters and
// digits starting with a letter, names the test suite; the lab's own
// prefix is "<prefix>-<pid>-<n>" (see [Lab.Prefix]). Before returning, New
// removes namespaces left by crashed runs: those named
// "<prefix>-<pid>-<n>-…" whose pid no longer runs, killing any process
// still inside them. It fails with [Available]'s error when labs cannot
// be built here.
func New(prefix string) (*Lab, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if err := cleanStale(prefix); err != nil {
		return nil, err
	}
	return &Lab{
		prefix: fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), labSeq.Add(1)),
		hosts:  make(map[string]*Host),
	}, nil
}

// Prefix returns the lab's unique prefix, "<prefix>-<pid>-<n>"; every
// namespace of the lab is named "<Prefix()>-<host name>".
func (l *Lab) Prefix() string { return l.prefix }

// AddHost creates a host: a network namespace "<Prefix()>-<name>" with its
// loopback interface up. name is 1 to 32 lower-case letters, digits and
// hyphens, starting with a letter or digit, unique within the lab.
func (l *Lab) AddHost(name string) (*Host, error) {
	if err := validateHostName(name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("netns: lab is closed")
	}
	if l.hosts[name] != nil {
		return nil, fmt.Errorf("netns: host %q already exists in lab %s", name, l.prefix)
	}
	h := &Host{lab: l, name: name, ns: l.prefix + "-" + name}
	if _, err := runIP("netns", "add", h.ns); err != nil {
		return nil, err
	}
	if _, err := runIP("-n", h.ns, "link", "set", "lo", "up"); err != nil {
		_ = removeNamespace(h.ns)
		return nil, err
	}
	l.hosts[name] = h
	l.order = append(l.order, h)
	return h, nil
}

// Link joins hosts a and b with a veth pair, assigns aAddr to a's end and
// bAddr to b's end, and brings both up. The addresses are IPv4 CIDRs in
// 10.0.0.0/8 on the same subnet, such as "10.77.0.1/30" and "10.77.0.2/30".
// The ends are named eth<k> after the number of links the host already
// has (eth0 for its first).
func (l *Lab) Link(a, b *Host, aAddr, bAddr string) error {
	if a == nil || b == nil {
		return errors.New("netns: Link needs two hosts")
	}
	if a.lab != l || b.lab != l {
		return errors.New("netns: Link: host belongs to another lab")
	}
	if a == b {
		return fmt.Errorf("netns: Link: cannot link host %q to itself", a.name)
	}
	pa, pb, err := parseLinkAddrs(aAddr, bAddr)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("netns: lab is closed")
	}
	ifA, ifB := fmt.Sprintf("eth%d", a.nextIf), fmt.Sprintf("eth%d", b.nextIf)
	if _, err := runIP("-n", a.ns, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.ns); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", a.ns, "addr", "add", pa.String(), "dev", ifA},
		{"-n", b.ns, "addr", "add", pb.String(), "dev", ifB},
		{"-n", a.ns, "link", "set", ifA, "up"},
		{"-n", b.ns, "link", "set", ifB, "up"},
	}
	for _, args := range steps {
		if _, err := runIP(args...); err != nil {
			// Deleting one end deletes the pair.
			_, _ = runIP("-n", a.ns, "link", "del", ifA)
			return err
		}
	}
	a.nextIf++
	b.nextIf++
	return nil
}

// Close kills the processes still running in the lab's namespaces and
// deletes the namespaces, and with them every interface the lab created.
// It is idempotent; later calls return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, h := range l.order {
		if err := removeNamespace(h.ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Name returns the host's name within its lab.
func (h *Host) Name() string { return h.name }

// Namespace returns the name of the host's network namespace, as shown by
// `ip netns list`.
func (h *Host) Namespace() string { return h.ns }

// Command returns a command that runs program name with args inside the
// host's network namespace (via `ip netns exec`, which execs the program,
// so the command's process is the program itself). Like
// exec.CommandContext, the process is killed when ctx is done; a nil ctx
// means context.Background.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if ctx == nil {
		ctx = context.Background()
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Run runs program name with args inside the host's namespace and returns
// its standard output; on failure the error includes its standard error.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := h.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("netns: %s %s in %s: %w: %s", name, strings.Join(args, " "), h.ns, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// AddRoute adds a static route in the host to the 10.x subnet dst (CIDR)
// through the 10.x gateway via, which must be on one of its links.
func (h *Host) AddRoute(dst, via string) error {
	p, err := netip.ParsePrefix(dst)
	if err != nil || !p.Addr().Is4() || !tenNet.Contains(p.Addr()) || p.Bits() < tenNet.Bits() {
		return fmt.Errorf("netns: route destination %q: want an IPv4 CIDR inside 10.0.0.0/8", dst)
	}
	if p != p.Masked() {
		return fmt.Errorf("netns: route destination %q has host bits set; did you mean %s?", dst, p.Masked())
	}
	gw, err := netip.ParseAddr(via)
	if err != nil || !gw.Is4() || !tenNet.Contains(gw) {
		return fmt.Errorf("netns: gateway %q: want an IPv4 address inside 10.0.0.0/8", via)
	}
	_, err = runIP("-n", h.ns, "route", "add", p.String(), "via", gw.String())
	return err
}

// EnableForwarding turns on IPv4 forwarding in the host, so that it
// routes between its links.
func (h *Host) EnableForwarding() error {
	return h.SetSysctl("net.ipv4.ip_forward", "1")
}

// SetSysctl sets a network sysctl inside the host's namespace. Only
// net.* keys are accepted: they are per namespace, while other sysctls
// would change the whole machine.
func (h *Host) SetSysctl(key, value string) error {
	if err := validateSysctl(key, value); err != nil {
		return err
	}
	if _, err := exec.LookPath("sysctl"); err != nil {
		return fmt.Errorf("netns: the sysctl command is not installed (install procps): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	_, err := h.Run(ctx, "sysctl", "-q", "-w", key+"="+value)
	return err
}

// validateSysctl accepts net.* keys of lower-case letters, digits, '_'
// and '-' between dots, and short plain values.
func validateSysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") || len(key) > 128 {
		return fmt.Errorf("netns: sysctl %q: only net.* keys are namespaced", key)
	}
	for _, part := range strings.Split(key, ".") {
		if part == "" {
			return fmt.Errorf("netns: sysctl %q: empty component", key)
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("netns: sysctl %q: invalid character %q", key, c)
			}
		}
	}
	if value == "" || len(value) > 64 {
		return fmt.Errorf("netns: sysctl %s: value must be 1 to 64 characters", key)
	}
	for i := 0; i < len(value); i++ {
		c := value[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("netns: sysctl %s: invalid character %q in value", key, c)
		}
	}
	return nil
}

// validatePrefix checks a lab prefix: 1..16 of [a-z0-9], starting with a
// letter. No hyphens, so that "<prefix>-<pid>-<n>-<host>" parses back.
func validatePrefix(prefix string) error {
	if prefix == "" || len(prefix) > maxPrefixLen {
		return fmt.Errorf("netns: prefix %q must be 1 to %d characters", prefix, maxPrefixLen)
	}
	if c := prefix[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("netns: prefix %q must start with a lower-case letter", prefix)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("netns: prefix %q: invalid character %q (want a-z, 0-9)", prefix, c)
		}
	}
	return nil
}

// validateHostName checks a host name: 1..32 of [a-z0-9-], not starting
// with a hyphen.
func validateHostName(name string) error {
	if name == "" || len(name) > maxHostNameLen {
		return fmt.Errorf("netns: host name %q must be 1 to %d characters", name, maxHostNameLen)
	}
	if name[0] == '-' {
		return fmt.Errorf("netns: host name %q must not start with '-'", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("netns: host name %q: invalid character %q (want a-z, 0-9, '-')", name, c)
		}
	}
	return nil
}

// parseLinkAddrs validates the two ends of a link: IPv4 CIDRs inside
// 10.0.0.0/8, on the same subnet of /8 to /31, distinct, and (below /31)
// neither the network nor the broadcast address.
func parseLinkAddrs(aAddr, bAddr string) (netip.Prefix, netip.Prefix, error) {
	var ps [2]netip.Prefix
	for i, s := range []string{aAddr, bAddr} {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: address %q: want an IPv4 CIDR such as 10.77.0.1/30", s)
		}
		if !tenNet.Contains(p.Addr()) {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: address %q is outside 10.0.0.0/8; labs use only 10.x addresses", s)
		}
		if p.Bits() < 8 || p.Bits() > 31 {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: address %q: prefix length must be 8 to 31", s)
		}
		if p.Bits() <= 30 {
			network := p.Masked().Addr()
			if p.Addr() == network || p.Addr() == broadcast(p) {
				return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: address %q is the network or broadcast address of its subnet", s)
			}
		}
		ps[i] = p
	}
	if ps[0].Masked() != ps[1].Masked() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: addresses %q and %q are not on the same subnet", aAddr, bAddr)
	}
	if ps[0].Addr() == ps[1].Addr() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("netns: both ends of the link have address %s", ps[0].Addr())
	}
	return ps[0], ps[1], nil
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<hostBits - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// runIP runs the ip command with args and returns its standard output;
// on failure the error includes the command line and ip's message.
func runIP(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// listNamespaces returns the names of all named network namespaces.
func listNamespaces() ([]string, error) {
	out, err := runIP("netns", "list")
	if err != nil {
		return nil, err
	}
	return parseNetnsList(out), nil
}

// cleanStale removes namespaces "<prefix>-<pid>-<n>-…" whose pid is not
// a running process.
func cleanStale(prefix string) error {
	names, err := listNamespaces()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		pid, ok := staleOwner(name, prefix)
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := removeNamespace(name); err != nil {
			errs = append(errs, fmt.Errorf("netns: remove stale namespace %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// processAlive reports whether pid names a running process (one we may
// not signal counts as running).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeNamespace kills the processes inside namespace ns and deletes it.
// A namespace that is already gone is not an error.
func removeNamespace(ns string) error {
	out, err := runIP("netns", "pids", ns)
	if err != nil {
		if !namespaceExists(ns) {
			return nil
		}
		return err
	}
	pids, err := parsePids(out)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue // never ourselves
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
	if _, err := runIP("netns", "del", ns); err != nil {
		if !namespaceExists(ns) {
			return nil
		}
		return err
	}
	return nil
}

// namespaceExists reports whether ns is listed by `ip netns list`.
func namespaceExists(ns string) bool {
	names, err := listNamespaces()
	if err != nil {
		return true // cannot tell; let the caller report its error
	}
	for _, n := range names {
		if n == ns {
			return true
		}
	}
	return false
}
