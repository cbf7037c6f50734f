package federated

import (
	"errors"
	"math"
	"testing"
)

func TestCollector(t *testing.T) {
	c, err := NewCollector(CollectorConfig{Round: "r1", BaseVersion: "3", Clients: []string{"a", "b", "c", "d"}, NumParams: 3, MaxNorm: 10})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(id string) Update { return Update{Client: id, Delta: []float32{1, 2, 2}, Samples: 5} }
	cases := []struct {
		round, base string
		u           Update
		reason      string
	}{
		{"r1", "3", ok("a"), ""},
		{"r0", "3", ok("b"), RejectStale},
		{"r1", "2", ok("b"), RejectStale},
		{"r1", "3", ok("a"), RejectDuplicate},
		{"r1", "3", ok("x"), RejectNotSampled},
		{"r1", "3", Update{Client: "b", Delta: []float32{1, 2}, Samples: 5}, RejectMalformed},
		{"r1", "3", Update{Client: "b", Delta: []float32{1, 2, 2}, Samples: 0}, RejectMalformed},
		{"r1", "3", Update{Client: "b", Delta: []float32{float32(math.NaN()), 0, 0}, Samples: 1}, RejectMalformed},
		{"r1", "3", Update{Client: "b", Delta: []float32{9, 9, 9}, Samples: 1}, RejectOutOfRange},
		{"r1", "3", Update{Client: "b", Delta: []float32{2e4, 0, 0}, Samples: 1}, RejectOutOfRange},
		{"r1", "3", ok("b"), ""},
	}
	for i, tc := range cases {
		err := c.Offer(tc.round, tc.base, tc.u)
		var re *RejectError
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("case %d: unexpected rejection %v", i, err)
		case tc.reason != "" && (!errors.As(err, &re) || re.Reason != tc.reason || !errors.Is(err, ErrRejected)):
			t.Errorf("case %d: got %v, want %s", i, err, tc.reason)
		}
	}
	if c.Count() != 2 || c.Samples() != 10 {
		t.Fatalf("count %d samples %d", c.Count(), c.Samples())
	}
	rej := c.Rejected()
	if rej[RejectStale] != 2 || rej[RejectMalformed] != 3 || rej[RejectOutOfRange] != 2 || rej[RejectDuplicate] != 1 || rej[RejectNotSampled] != 1 {
		t.Fatalf("rejected %v", rej)
	}
	if s := c.Stragglers(); len(s) != 2 || s[0] != "c" || s[1] != "d" {
		t.Fatalf("stragglers %v", s)
	}
	c.Close()
	if err := c.Offer("r1", "3", ok("c")); err == nil || !errors.Is(err, ErrRejected) {
		t.Fatalf("late update: %v", err)
	}
	if _, err := NewCollector(CollectorConfig{}); err == nil {
		t.Fatal("empty config accepted")
	}
}
