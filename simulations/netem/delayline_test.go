package netem

import (
	"testing"
	"time"
)

func TestDelayLineKeepsOrderAndDueTimes(t *testing.T) {
	l := newDelayLine(100, 1<<20)
	base := time.Now()
	// Due times deliberately out of order, as jitter produces them.
	offsets := []time.Duration{30, 10, 20, 5, 40, 35}
	for i, off := range offsets {
		if !l.push(packet{due: base.Add(off * time.Millisecond), data: []byte{byte(i)}}, false) {
			t.Fatal("push refused")
		}
	}
	type delivery struct {
		seq byte
		at  time.Time
	}
	var got []delivery
	done := make(chan error, 1)
	go func() {
		done <- l.run(func(p packet) error {
			got = append(got, delivery{p.data[0], time.Now()})
			if len(got) == len(offsets) {
				return errLineDone
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("delay line never delivered")
	}
	var latest time.Duration
	for i, d := range got {
		if d.seq != byte(i) {
			t.Fatalf("delivery %d is packet %d: order not kept", i, d.seq)
		}
		// A packet leaves no earlier than its own due time and no
		// earlier than any packet ahead of it.
		latest = max(latest, offsets[i]*time.Millisecond)
		if early := d.at.Sub(base); early < latest {
			t.Errorf("packet %d left after %v, before %v", i, early, latest)
		}
	}
	if l.push(packet{due: base, data: []byte{9}}, false) {
		t.Error("push succeeded on a line that finished")
	}
}

func TestDelayLineDropsWhenFull(t *testing.T) {
	l := newDelayLine(2, 10)
	due := time.Now().Add(time.Hour)
	for range 2 {
		if !l.push(packet{due: due, data: make([]byte, 4)}, false) {
			t.Fatal("push refused below the limits")
		}
	}
	if l.push(packet{due: due, data: make([]byte, 1)}, false) {
		t.Error("push accepted a third packet over maxPackets")
	}
	l2 := newDelayLine(100, 10)
	if !l2.push(packet{due: due, data: make([]byte, 8)}, false) {
		t.Fatal("push refused below the limits")
	}
	if l2.push(packet{due: due, data: make([]byte, 3)}, false) {
		t.Error("push accepted bytes over maxBytes")
	}
	l.close()
	l2.close()
}

func TestDelayLineBlockingPushWaitsForSpace(t *testing.T) {
	l := newDelayLine(100, 10)
	if !l.push(packet{due: time.Now(), data: make([]byte, 10)}, true) {
		t.Fatal("first push refused")
	}
	pushed := make(chan bool, 1)
	go func() { pushed <- l.push(packet{due: time.Now(), data: make([]byte, 5)}, true) }()
	select {
	case <-pushed:
		t.Fatal("blocking push returned while the line was full")
	case <-time.After(20 * time.Millisecond):
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = l.run(func(packet) error { return nil })
	}()
	select {
	case ok := <-pushed:
		if !ok {
			t.Fatal("blocked push failed after space freed")
		}
	case <-time.After(testTimeout):
		t.Fatal("blocked push never resumed")
	}
	l.close()
	<-ran
}

func TestDelayLineCloseReleasesBlockedPushAndRun(t *testing.T) {
	l := newDelayLine(100, 10)
	buf := chunkPool.Get().(*[]byte)
	if !l.push(packet{due: time.Now().Add(time.Hour), data: (*buf)[:10], buf: buf}, true) {
		t.Fatal("first push refused")
	}
	pushed := make(chan bool, 1)
	go func() { pushed <- l.push(packet{due: time.Now(), data: make([]byte, 5)}, true) }()
	ran := make(chan error, 1)
	go func() { ran <- l.run(func(packet) error { t.Error("delivered a packet due in an hour"); return nil }) }()
	time.Sleep(10 * time.Millisecond)
	l.close()
	l.close() // idempotent
	for name, ch := range map[string]<-chan bool{"push": pushed} {
		select {
		case ok := <-ch:
			if ok {
				t.Errorf("%s succeeded on a closed line", name)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s still blocked after close", name)
		}
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("run returned %v after close", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("run still waiting after close")
	}
}
