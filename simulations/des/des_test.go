package des

import (
	"slices"
	"testing"
	"time"
)

func TestOrderByTimeThenInsertion(t *testing.T) {
	s := New(1)
	var got []int
	s.At(30*time.Millisecond, func() { got = append(got, 3) })
	s.At(10*time.Millisecond, func() { got = append(got, 1) })
	s.At(10*time.Millisecond, func() { got = append(got, 2) })
	s.At(0, func() { got = append(got, 0) })
	if n := s.Run(Forever); n != 4 {
		t.Fatalf("Run ran %d events, want 4", n)
	}
	if want := []int{0, 1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if s.Now() != 30*time.Millisecond {
		t.Fatalf("Now = %v, want 30ms", s.Now())
	}
}

func TestRandomScheduleIsSorted(t *testing.T) {
	s := New(7)
	r := s.Rand()
	type stamp struct {
		t   Time
		seq int
	}
	var got []stamp
	for i := range 5000 {
		at := Time(r.IntN(1000)) * time.Microsecond
		s.At(at, func() { got = append(got, stamp{s.Now(), i}) })
	}
	s.Run(Forever)
	if len(got) != 5000 {
		t.Fatalf("ran %d, want 5000", len(got))
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.t > b.t || (a.t == b.t && a.seq > b.seq) {
			t.Fatalf("event %d (%v,#%d) ran before (%v,#%d)", i, a.t, a.seq, b.t, b.seq)
		}
	}
}

func TestRunUntilAdvancesClockAndContinues(t *testing.T) {
	s := New(1)
	var ran []Time
	var tick func()
	tick = func() {
		ran = append(ran, s.Now())
		s.After(time.Second, tick)
	}
	s.After(time.Second, tick)
	if n := s.Run(3500 * time.Millisecond); n != 3 {
		t.Fatalf("first Run ran %d, want 3", n)
	}
	if s.Now() != 3500*time.Millisecond {
		t.Fatalf("Now = %v, want 3.5s", s.Now())
	}
	if n := s.Run(5 * time.Second); n != 2 {
		t.Fatalf("second Run ran %d, want 2", n)
	}
	if want := []Time{1e9, 2e9, 3e9, 4e9, 5e9}; !slices.Equal(ran, want) {
		t.Fatalf("ticks at %v, want %v", ran, want)
	}
	if s.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", s.Pending())
	}
}

func TestStop(t *testing.T) {
	s := New(1)
	count := 0
	for i := range 10 {
		s.At(Time(i), func() {
			count++
			if count == 4 {
				s.Stop()
			}
		})
	}
	if n := s.Run(Forever); n != 4 {
		t.Fatalf("Run ran %d before Stop, want 4", n)
	}
	if s.Now() != 3 {
		t.Fatalf("Now = %v after Stop, want 3ns", s.Now())
	}
	if n := s.Run(Forever); n != 6 {
		t.Fatalf("resumed Run ran %d, want 6", n)
	}
}

func TestPastAndNegativeClamp(t *testing.T) {
	s := New(1)
	var at []Time
	s.At(time.Second, func() {
		s.At(0, func() { at = append(at, s.Now()) })
		s.After(-time.Second, func() { at = append(at, s.Now()) })
		s.At(time.Second, nil) // ignored
	})
	s.Run(Forever)
	if want := []Time{time.Second, time.Second}; !slices.Equal(at, want) {
		t.Fatalf("clamped events ran at %v, want %v", at, want)
	}
	if s.Executed() != 3 {
		t.Fatalf("Executed = %d, want 3", s.Executed())
	}
}

func TestAfterOverflowSaturates(t *testing.T) {
	s := New(1)
	s.At(time.Hour, func() {
		s.After(Forever, func() {})
	})
	s.Run(2 * time.Hour)
	if s.Pending() != 1 || s.heap[0].t != Forever {
		t.Fatalf("overflowing After not saturated: pending %d", s.Pending())
	}
}

func TestNestedRunRefused(t *testing.T) {
	s := New(1)
	inner := -1
	s.At(1, func() { inner = s.Run(Forever) })
	s.At(2, func() {})
	s.Run(Forever)
	if inner != 0 {
		t.Fatalf("nested Run returned %d, want 0", inner)
	}
}

func TestDeterministicRand(t *testing.T) {
	a, b := New(42), New(42)
	for range 100 {
		if a.Rand().Uint64() != b.Rand().Uint64() {
			t.Fatal("same seed, different streams")
		}
	}
	if New(1).Rand().Uint64() == New(2).Rand().Uint64() {
		t.Fatal("different seeds gave the same first value")
	}
}

// BenchmarkEvents measures scheduling plus running one event with a
// pending queue of about 10,000 events.
func BenchmarkEvents(b *testing.B) {
	s := New(1)
	r := s.Rand()
	f := func() {}
	for range 10000 {
		s.After(Time(r.IntN(1e6)), f)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.After(Time(r.IntN(1e6)), f)
		s.Run(s.heap[0].t)
	}
}
