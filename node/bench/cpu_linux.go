package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the machine's CPU time and this process's (with its
// reaped children) at one moment, to tell how much of the machine other
// work took during a run.
type cpuSample struct {
	busy, all time.Duration // all CPUs, from /proc/stat
	ours      time.Duration // self + reaped children, from getrusage
	ok        bool
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

func sampleCPU() cpuSample {
	var s cpuSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		d := time.Duration(n) * clockTick
		s.all += d
		if i != 3 && i != 4 { // idle, iowait
			s.busy += d
		}
	}
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) != nil {
			return s
		}
		s.ours += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.ok = true
	return s
}

// foreignCPU is the share of the machine's CPU time between a and b that
// went to processes other than this one and its children: the noise the
// figures were taken in.
func foreignCPU(a, b cpuSample) (float64, bool) {
	if !a.ok || !b.ok || b.all <= a.all {
		return 0, false
	}
	f := float64((b.busy-a.busy)-(b.ours-a.ours)) / float64(b.all-a.all)
	return max(f, 0), true
}
