package routing

import (
	"slices"
	"sync"
	"time"
)

// Defaults of OutlierConfig, those of Envoy's outlier detection.
const (
	// DefaultConsecutiveFailures is the default OutlierConfig.ConsecutiveFailures.
	DefaultConsecutiveFailures = 5
	// DefaultBaseEjection is the default OutlierConfig.BaseEjection.
	DefaultBaseEjection = 10 * time.Second
	// DefaultMaxEjection is the default OutlierConfig.MaxEjection.
	DefaultMaxEjection = 5 * time.Minute
	// DefaultMaxEjectedPercent is the default OutlierConfig.MaxEjectedPercent.
	DefaultMaxEjectedPercent = 50
)

// OutlierConfig configures an OutlierDetector. Zero (or negative) fields take
// their defaults.
type OutlierConfig struct {
	// ConsecutiveFailures is the number of failures in a row that ejects a
	// host. Default DefaultConsecutiveFailures.
	ConsecutiveFailures int
	// BaseEjection is the ejection time of a first ejection; the n-th
	// ejection lasts n × BaseEjection. Default DefaultBaseEjection.
	BaseEjection time.Duration
	// MaxEjection caps an ejection time; raised to BaseEjection if below it.
	// Default DefaultMaxEjection.
	MaxEjection time.Duration
	// MaxEjectedPercent is the largest share of known hosts that may be
	// ejected at once, 1..100. Default DefaultMaxEjectedPercent.
	MaxEjectedPercent int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// outlierHost is the state of one host.
type outlierHost struct {
	consecutive  int       // failures in a row
	ejections    int       // multiplier of the next ejection time
	ejectedUntil time.Time // zero when not ejected
	healthySince time.Time // when the host was last returned (for decay)
}

// OutlierDetector ejects hosts that fail repeatedly, as Envoy's outlier
// detection does for consecutive errors: after ConsecutiveFailures failures
// in a row a host is ejected for BaseEjection × (its number of ejections),
// capped at MaxEjection, and then returns with a clean slate. A host that
// stays healthy earns the multiplier back, one step per BaseEjection, so a
// host that failed once long ago is not punished as a repeat offender.
//
// Ejection is refused when it would take the ejected share of known hosts
// above MaxEjectedPercent: when many hosts fail together the problem is
// more likely the caller, the network or the load, and ejecting them all
// would only concentrate traffic on the rest (Envoy's panic threshold
// reasoning). The failing host keeps counting failures and is ejected as
// soon as room frees up.
//
// Hosts become known through SetHosts or by being reported; SetHosts forgets
// all others. Ejections end lazily, when a method next looks at the host.
// An OutlierDetector is safe for concurrent use.
type OutlierDetector struct {
	mu    sync.Mutex
	cfg   OutlierConfig
	hosts map[string]*outlierHost
}

// NewOutlierDetector returns a detector with cfg, defaults filled in.
func NewOutlierDetector(cfg OutlierConfig) *OutlierDetector {
	if cfg.ConsecutiveFailures <= 0 {
		cfg.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if cfg.BaseEjection <= 0 {
		cfg.BaseEjection = DefaultBaseEjection
	}
	if cfg.MaxEjection <= 0 {
		cfg.MaxEjection = DefaultMaxEjection
	}
	cfg.MaxEjection = max(cfg.MaxEjection, cfg.BaseEjection)
	if cfg.MaxEjectedPercent <= 0 {
		cfg.MaxEjectedPercent = DefaultMaxEjectedPercent
	}
	cfg.MaxEjectedPercent = min(cfg.MaxEjectedPercent, 100)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &OutlierDetector{cfg: cfg, hosts: make(map[string]*outlierHost)}
}

// host returns the state of id, creating it if needed, with any expired
// ejection ended. The caller holds the lock.
func (d *OutlierDetector) host(id string, now time.Time) *outlierHost {
	h := d.hosts[id]
	if h == nil {
		h = &outlierHost{healthySince: now}
		d.hosts[id] = h
	}
	d.expire(h, now)
	return h
}

// expire ends h's ejection if its time is up. The caller holds the lock.
func (d *OutlierDetector) expire(h *outlierHost, now time.Time) {
	if !h.ejectedUntil.IsZero() && !now.Before(h.ejectedUntil) {
		h.healthySince = h.ejectedUntil
		h.ejectedUntil = time.Time{}
		h.consecutive = 0
	}
}

// ejected reports whether h is ejected. The caller has called expire.
func (h *outlierHost) ejected() bool { return !h.ejectedUntil.IsZero() }

// ReportSuccess records a successful request to id, resetting its count of
// consecutive failures.
func (d *OutlierDetector) ReportSuccess(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host(id, d.cfg.Now()).consecutive = 0
}

// ReportFailure records a failed request to id and ejects it if that makes
// ConsecutiveFailures in a row and MaxEjectedPercent allows. Failures
// reported while id is ejected (requests that were already in flight) are
// ignored.
func (d *OutlierDetector) ReportFailure(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	h := d.host(id, now)
	if h.ejected() {
		return
	}
	h.consecutive++
	if h.consecutive < d.cfg.ConsecutiveFailures || !d.roomToEject(now) {
		return
	}
	// Earn back one step of the multiplier per BaseEjection healthy.
	if healthy := now.Sub(h.healthySince); healthy > 0 {
		h.ejections = max(0, h.ejections-int(healthy/d.cfg.BaseEjection))
	}
	h.ejections++
	h.ejectedUntil = now.Add(d.ejectionTime(h.ejections))
	h.consecutive = 0
}

// ejectionTime is n × BaseEjection, capped at MaxEjection without
// overflowing.
func (d *OutlierDetector) ejectionTime(n int) time.Duration {
	if time.Duration(n) > d.cfg.MaxEjection/d.cfg.BaseEjection {
		return d.cfg.MaxEjection
	}
	return min(time.Duration(n)*d.cfg.BaseEjection, d.cfg.MaxEjection)
}

// roomToEject reports whether one more host may be ejected without the
// ejected share exceeding MaxEjectedPercent. The caller holds the lock.
func (d *OutlierDetector) roomToEject(now time.Time) bool {
	ejected := 0
	for _, h := range d.hosts {
		d.expire(h, now)
		if h.ejected() {
			ejected++
		}
	}
	return (ejected+1)*100 <= d.cfg.MaxEjectedPercent*len(d.hosts)
}

// Ejected reports whether id is currently ejected. Unknown hosts are not.
func (d *OutlierDetector) Ejected(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[id]
	if h == nil {
		return false
	}
	d.expire(h, d.cfg.Now())
	return h.ejected()
}

// EjectedHosts returns the IDs of the hosts ejected now, sorted.
func (d *OutlierDetector) EjectedHosts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	var ids []string
	for id, h := range d.hosts {
		d.expire(h, now)
		if h.ejected() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// SetHosts makes ids the set of known hosts: hosts not in ids are forgotten
// (with their ejections), new ones start healthy, and the state of the others
// is kept.
func (d *OutlierDetector) SetHosts(ids []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
		if d.hosts[id] == nil {
			d.hosts[id] = &outlierHost{healthySince: now}
		}
	}
	for id := range d.hosts {
		if !keep[id] {
			delete(d.hosts, id)
		}
	}
}
