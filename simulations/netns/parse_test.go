package netns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseNetnsList(t *testing.T) {
	out := "lab-1-0-b (id: 3)\nlab-1-0-a\n\n  \nbad/name (id: 1)\n" + strings.Repeat("x", 300) + "\n"
	if got, want := parseNetnsList(out), []string{"lab-1-0-b", "lab-1-0-a"}; !slices.Equal(got, want) {
		t.Errorf("parseNetnsList = %q, want %q", got, want)
	}
}

func TestParsePids(t *testing.T) {
	got, err := parsePids("12\n 345 \n\n")
	if err != nil || !slices.Equal(got, []int{12, 345}) {
		t.Errorf("parsePids = %v, %v", got, err)
	}
	for _, bad := range []string{"12x\n", "-4\n", "0\n", "1 2\n", "99999999999999999999999\n"} {
		if _, err := parsePids(bad); err == nil {
			t.Errorf("parsePids(%q) accepted", bad)
		}
	}
}

func TestParseCapEff(t *testing.T) {
	caps, err := parseCapEff("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n")
	if err != nil || caps != 0x000001fffeffffff {
		t.Errorf("parseCapEff = %#x, %v", caps, err)
	}
	for _, bad := range []string{"", "CapPrm:\t1\n", "CapEff:\n", "CapEff:\tzz\n", "CapEff:\t" + strings.Repeat("f", 17) + "\n"} {
		if _, err := parseCapEff(bad); err == nil {
			t.Errorf("parseCapEff(%q) accepted", bad)
		}
	}
}

func TestStaleOwner(t *testing.T) {
	cases := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"suite-123-0-a", 123, true},
		{"suite-123-45-host-with-hyphens", 123, true},
		{"suite-123-0-", 0, false},
		{"suite-123-a", 0, false},
		{"suite-abc-0-a", 0, false},
		{"suite-0-0-a", 0, false},
		{"suite-+12-0-a", 0, false},
		{"suite2-123-0-a", 0, false},
		{"other-123-0-a", 0, false},
		{"suite", 0, false},
	}
	for _, tc := range cases {
		pid, ok := staleOwner(tc.name, "suite")
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("staleOwner(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"10.77.0.1/30": "10.77.0.3", "10.0.0.0/8": "10.255.255.255", "10.1.2.3/24": "10.1.2.255"} {
		p := netip.MustParsePrefix(in)
		if got := broadcast(p).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzParseNetnsList checks that `ip netns list` output never makes the
// parser panic and that every name it returns is a valid namespace name.
func FuzzParseNetnsList(f *testing.F) {
	f.Add("a (id: 0)\nb\n")
	f.Add("")
	f.Add("\n\n(id: 1)\n")
	f.Fuzz(func(t *testing.T, out string) {
		for _, n := range parseNetnsList(out) {
			if !validNamespaceName(n) {
				t.Fatalf("returned invalid name %q", n)
			}
			if _, ok := staleOwner(n, "suite"); ok && !strings.HasPrefix(n, "suite-") {
				t.Fatalf("staleOwner matched %q", n)
			}
		}
	})
}

// FuzzParsePids checks the `ip netns pids` parser: no panic, and only
// positive PIDs are returned.
func FuzzParsePids(f *testing.F) {
	f.Add("1\n2\n")
	f.Add("x")
	f.Fuzz(func(t *testing.T, out string) {
		pids, err := parsePids(out)
		if err != nil {
			return
		}
		for _, p := range pids {
			if p <= 0 {
				t.Fatalf("returned pid %d", p)
			}
		}
	})
}

// FuzzParseCapEff checks the /proc/self/status parser never panics.
func FuzzParseCapEff(f *testing.F) {
	f.Add("CapEff:\t000001fffeffffff\n")
	f.Add("CapEff:")
	f.Fuzz(func(t *testing.T, status string) {
		caps, err := parseCapEff(status)
		if err != nil && caps != 0 {
			t.Fatalf("error %v with caps %#x", err, caps)
		}
	})
}
