package routing

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// SplitTolerance is how far from 100 the weights given to NewSplit may add
// up to, in percentage points, to absorb rounding in configuration files and
// in weights computed as 100 - w.
const SplitTolerance = 0.01

// splitScale is the number of points on the split line, 2^53: every
// float64 in [0, 1) times splitScale is an exact integer, and a uint64 hash
// shifted right by 11 bits is a uniform point on the line.
const splitScale = 1 << 53

// Split is a weighted traffic split between versions of one model, sticky by
// a request key.
//
// The versions are laid out on a line of 2^53 points in the order given to
// NewSplit, each taking a segment proportional to its weight: the first
// version starts at 0 and the last version ends at the end of the line. A
// request lands at the point xxhash64(key) >> 11 (Pick) or r >> 11
// (PickRandom) and goes to the version whose segment holds it.
//
// Stickiness under a growing canary: pass the stable version first and the
// candidate last. The candidate's segment is then [1 - w, 1) of the line (w
// its share of the total weight), which only grows towards the front as w
// grows, so a key that went to the candidate at 1 % still goes to it at 5,
// 10, 50 and 100 %; keys only ever move from the stable version to the
// candidate, never back. With more than two versions the same holds for the
// last one; the middle ones shift as their neighbours' weights change.
//
// A Split is immutable and safe for concurrent use.
type Split struct {
	versions []string
	weights  []float64
	// ends[i] is the exclusive end of versions[i]'s segment on the line;
	// the segment starts at ends[i-1] (0 for i = 0). ends[len-1] is
	// splitScale.
	ends []uint64
}

// NewSplit returns the split of traffic between versions with the given
// weights, in percent. The weights must be finite, not negative, and add up
// to 100 ± SplitTolerance; a version with weight 0 gets no traffic, and at
// least one must have some. Versions must be non-empty and distinct, and
// there must be as many weights as versions. Order matters: see Split.
func NewSplit(versions []string, weights []float64) (*Split, error) {
	if len(versions) != len(weights) {
		return nil, fmt.Errorf("routing: split: %d versions but %d weights", len(versions), len(weights))
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("routing: split: no versions")
	}
	seen := make(map[string]bool, len(versions))
	total := 0.0
	for i, v := range versions {
		w := weights[i]
		switch {
		case v == "":
			return nil, fmt.Errorf("routing: split: version %d is empty", i)
		case seen[v]:
			return nil, fmt.Errorf("routing: split: version %q appears twice", v)
		case !finite(w):
			return nil, fmt.Errorf("routing: split: weight of version %q is %g, not a finite number", v, w)
		case w < 0:
			return nil, fmt.Errorf("routing: split: weight of version %q is negative (%g)", v, w)
		}
		seen[v] = true
		total += w
	}
	if math.Abs(total-100) > SplitTolerance {
		return nil, fmt.Errorf("routing: split: weights add up to %g, want 100 (±%g)", total, SplitTolerance)
	}
	s := &Split{
		versions: append([]string(nil), versions...),
		weights:  append([]float64(nil), weights...),
		ends:     make([]uint64, len(versions)),
	}
	// Cumulative ends from the front, normalised by the actual total so the
	// tolerance leaves no gap and no overlap. The last end is pinned to the
	// end of the line, so the last version's segment is exactly
	// [end of the others, end of line) and grows monotonically with its
	// share. Zero weights add nothing to the running sum, so their segments
	// are empty.
	cum := 0.0
	for i, w := range weights {
		cum += w
		e := uint64(math.Floor(cum / total * splitScale))
		if e > splitScale {
			e = splitScale
		}
		if i > 0 && e < s.ends[i-1] {
			e = s.ends[i-1]
		}
		s.ends[i] = e
	}
	s.ends[len(s.ends)-1] = splitScale
	return s, nil
}

// Versions returns the versions in split order (a copy).
func (s *Split) Versions() []string { return append([]string(nil), s.versions...) }

// Weight returns the weight of version v in percent, and false if v is not
// in the split.
func (s *Split) Weight(v string) (float64, bool) {
	for i, x := range s.versions {
		if x == v {
			return s.weights[i], true
		}
	}
	return 0, false
}

// String formats the split as "v1=95,v2=5".
func (s *Split) String() string {
	var b strings.Builder
	for i, v := range s.versions {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(s.weights[i], 'f', -1, 64))
	}
	return b.String()
}

// Pick returns the version for a request with the given key, such as a user
// or session ID: always the same version for the same key and split, and the
// same version across splits as long as that version's segment still covers
// the key (see Split). The key is hashed with xxhash64; an empty key is
// hashed like any other, so all keyless requests would go to one version:
// use PickRandom for those.
func (s *Split) Pick(key string) string {
	return s.at(xxhash.Sum64String(key) >> 11)
}

// PickRandom returns the version for a request without a key, given a
// uniformly random r (for example from math/rand/v2's Uint64).
func (s *Split) PickRandom(r uint64) string {
	return s.at(r >> 11)
}

// at returns the version whose segment holds point p in [0, splitScale).
func (s *Split) at(p uint64) string {
	// Few versions: a linear walk beats a binary search. Zero-weight
	// versions have empty segments (ends[i] == ends[i-1]) and are skipped
	// because p < ends[i-1] failed already.
	for i, e := range s.ends {
		if p < e {
			return s.versions[i]
		}
	}
	return s.versions[len(s.versions)-1]
}
