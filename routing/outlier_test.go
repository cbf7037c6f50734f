package routing

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

func newTestDetector(clock *fakeClock, hosts ...string) *OutlierDetector {
	d := NewOutlierDetector(OutlierConfig{
		ConsecutiveFailures: 3,
		BaseEjection:        10 * time.Second,
		MaxEjection:         35 * time.Second,
		MaxEjectedPercent:   50,
		Now:                 clock.Now,
	})
	d.SetHosts(hosts)
	return d
}

func fail(d *OutlierDetector, id string, n int) {
	for range n {
		d.ReportFailure(id)
	}
}

func TestOutlierConsecutiveFailures(t *testing.T) {
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	fail(d, "a", 2)
	d.ReportSuccess("a") // resets the run
	fail(d, "a", 2)
	if d.Ejected("a") {
		t.Fatal("ejected after 2 failures in a row (threshold 3)")
	}
	d.ReportFailure("a")
	if !d.Ejected("a") {
		t.Fatal("not ejected after 3 failures in a row")
	}
	if d.Ejected("b") || d.Ejected("unknown") {
		t.Fatal("healthy or unknown host reported ejected")
	}
	if got := d.EjectedHosts(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("EjectedHosts = %v, want [a]", got)
	}
}

func TestOutlierEjectionTimes(t *testing.T) {
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	// The n-th ejection lasts n × 10 s, capped at 35 s.
	for n, want := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 35 * time.Second, 35 * time.Second} {
		fail(d, "a", 3)
		if !d.Ejected("a") {
			t.Fatalf("ejection %d did not happen", n+1)
		}
		clock.Advance(want - time.Nanosecond)
		if !d.Ejected("a") {
			t.Fatalf("ejection %d ended before %v", n+1, want)
		}
		// Failures while ejected are ignored.
		fail(d, "a", 10)
		clock.Advance(time.Nanosecond)
		if d.Ejected("a") {
			t.Fatalf("ejection %d lasted beyond %v", n+1, want)
		}
	}
	// A returning host starts with a clean slate of failures.
	fail(d, "a", 2)
	if d.Ejected("a") {
		t.Fatal("failures from before the ejection counted after it")
	}
}

func TestOutlierMultiplierDecays(t *testing.T) {
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	fail(d, "a", 3)
	clock.Advance(10 * time.Second) // back after 10 s
	fail(d, "a", 3)                 // second ejection right away: 20 s
	clock.Advance(20*time.Second - time.Nanosecond)
	if !d.Ejected("a") {
		t.Fatal("second ejection shorter than 20s")
	}
	clock.Advance(time.Nanosecond)
	// Healthy for 25 s earns back two steps: the next ejection is a
	// first one again.
	clock.Advance(25 * time.Second)
	fail(d, "a", 3)
	clock.Advance(10 * time.Second)
	if d.Ejected("a") {
		t.Fatal("multiplier did not decay while the host was healthy")
	}
}

func TestOutlierMaxEjectedPercent(t *testing.T) {
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	fail(d, "a", 3)
	fail(d, "b", 3)
	fail(d, "c", 3) // would make 3 of 4 = 75 % > 50 %
	if got := d.EjectedHosts(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("EjectedHosts = %v, want [a b]", got)
	}
	// When a slot frees up, the next failure of c ejects it.
	clock.Advance(10 * time.Second)
	d.ReportFailure("c")
	if !d.Ejected("c") {
		t.Fatal("c not ejected once there was room")
	}
	// Forgetting hosts frees slots too, and a lone host is never ejected
	// at 50 %.
	d.SetHosts([]string{"z"})
	fail(d, "z", 10)
	if d.Ejected("z") || d.Ejected("c") {
		t.Fatal("lone host ejected, or forgotten host still ejected")
	}

	all := NewOutlierDetector(OutlierConfig{ConsecutiveFailures: 1, MaxEjectedPercent: 100, Now: clock.Now})
	all.SetHosts([]string{"x", "y"})
	all.ReportFailure("x")
	all.ReportFailure("y")
	if !all.Ejected("x") || !all.Ejected("y") {
		t.Fatal("MaxEjectedPercent 100 did not allow ejecting every host")
	}
}

func TestOutlierSetHosts(t *testing.T) {
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	fail(d, "a", 3)
	fail(d, "b", 2)
	d.SetHosts([]string{"a", "b", "e", "f"})
	if !d.Ejected("a") {
		t.Fatal("SetHosts ended a kept host's ejection")
	}
	d.ReportFailure("b")
	if !d.Ejected("b") {
		t.Fatal("SetHosts reset a kept host's failures")
	}
	d.SetHosts([]string{"b"})
	d.SetHosts([]string{"a", "b"})
	if d.Ejected("a") {
		t.Fatal("a forgotten and re-added host kept its ejection")
	}
	// Reporting an unknown host makes it known.
	d.ReportSuccess("new")
	if _, ok := d.hosts["new"]; !ok {
		t.Fatal("reported host not tracked")
	}
}

func TestOutlierDefaults(t *testing.T) {
	d := NewOutlierDetector(OutlierConfig{MaxEjection: time.Second, MaxEjectedPercent: 400})
	want := OutlierConfig{
		ConsecutiveFailures: DefaultConsecutiveFailures,
		BaseEjection:        DefaultBaseEjection,
		MaxEjection:         DefaultBaseEjection, // raised to the base
		MaxEjectedPercent:   100,
	}
	got := d.cfg
	got.Now = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("config %+v, want %+v", got, want)
	}
	if d.cfg.Now == nil {
		t.Fatal("no default clock")
	}
	d = NewOutlierDetector(OutlierConfig{})
	if d.cfg.MaxEjection != DefaultMaxEjection || d.cfg.MaxEjectedPercent != DefaultMaxEjectedPercent {
		t.Fatalf("zero config gave %+v", d.cfg)
	}
	// An enormous ejection count does not overflow the duration.
	if got := d.ejectionTime(1 << 62); got != DefaultMaxEjection {
		t.Fatalf("ejectionTime(huge) = %v", got)
	}
}

func TestOutlierConcurrent(t *testing.T) {
	// Run with -race.
	clock := newFakeClock()
	d := newTestDetector(clock, "a", "b", "c", "d")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				id := fmt.Sprintf("%c", 'a'+(g+i)%4)
				if i%3 == 0 {
					d.ReportSuccess(id)
				} else {
					d.ReportFailure(id)
				}
				_ = d.Ejected(id)
				if i%100 == 0 {
					clock.Advance(time.Second)
					d.SetHosts([]string{"a", "b", "c", "d"})
				}
			}
		})
	}
	wg.Wait()
	if n := len(d.EjectedHosts()); n > 2 {
		t.Fatalf("%d of 4 hosts ejected, over 50 %%", n)
	}
}
