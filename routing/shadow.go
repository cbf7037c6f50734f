package routing

import (
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
)

// shadowSeed seeds the hash of ShouldMirror so that which keys are mirrored
// is independent of where Split.Pick puts them: otherwise a 5 % shadow would
// only ever see keys from one end of the split line, all served by the same
// version.
const shadowSeed = 0x5ad0_77ee_c0ff_ee01

// CompareOutputs compares the output of a shadow version with the output of
// the serving version for the same request, element by element, and returns:
//
//   - sumAbs, the sum of |served[i] - shadow[i]| over the finite differences;
//   - maxAbs, the largest |served[i] - shadow[i]|, +Inf if any difference is
//     infinite (see below);
//   - sumSq, the sum of the squared finite differences;
//   - n, the number of elements compared, len(served);
//   - argmaxDiffers, whether the index of the largest value (top-1 class)
//     differs between the two.
//
// Differences are computed in float64, so float32 inputs never overflow.
// Non-finite values:
//
//   - equal values, including the same infinity, differ by 0, and so do two
//     NaNs (both versions failed the same way);
//   - a NaN on one side only, opposite infinities, or an infinity against a
//     finite number differ by +Inf: they make maxAbs +Inf and are counted in
//     n but left out of sumAbs and sumSq, so the sums stay finite and keep
//     measuring the elements that can be compared. (Callers that encode
//     maxAbs as JSON must map +Inf to something encoding/json accepts.)
//
// For the argmax, NaNs are ignored and ties go to the lowest index; a vector
// that is empty or all NaN has no argmax, and two vectors without one do not
// differ.
//
// It is an error, and all results are zero, if the lengths differ.
func CompareOutputs(served, shadow []float32) (sumAbs float64, maxAbs float64, sumSq float64, n int, argmaxDiffers bool, err error) {
	if len(served) != len(shadow) {
		return 0, 0, 0, 0, false, fmt.Errorf("routing: compare outputs: served has %d elements, shadow %d", len(served), len(shadow))
	}
	for i, a32 := range served {
		a, b := float64(a32), float64(shadow[i])
		d := elementDiff(a, b)
		if math.IsInf(d, 1) {
			maxAbs = d
			continue
		}
		sumAbs += d
		sumSq += d * d
		if d > maxAbs {
			maxAbs = d
		}
	}
	return sumAbs, maxAbs, sumSq, len(served), argmax(served) != argmax(shadow), nil
}

// elementDiff is |a - b| with the NaN and infinity rules of CompareOutputs.
func elementDiff(a, b float64) float64 {
	aNaN, bNaN := math.IsNaN(a), math.IsNaN(b)
	switch {
	case aNaN && bNaN, a == b:
		return 0
	case aNaN || bNaN:
		return math.Inf(1)
	}
	// Inf - finite is Inf; Inf - (-Inf) is Inf; both equal infinities were
	// caught by a == b, so the result is never NaN.
	return math.Abs(a - b)
}

// argmax returns the index of the largest non-NaN value of v, the lowest on
// ties, or -1 if there is none.
func argmax(v []float32) int {
	best := -1
	for i, x := range v {
		if x != x { // NaN
			continue
		}
		if best < 0 || x > v[best] {
			best = i
		}
	}
	return best
}

// ShouldMirror reports whether a request should also be sent to a shadow
// version that receives share percent of the traffic. With a non-empty key
// the answer is sticky: the same key is always mirrored or always not, and a
// key mirrored at some share is mirrored at every larger share. Without a
// key the decision is taken from r, a uniformly random number supplied by
// the caller. A share of 0 or less (or NaN) mirrors nothing; 100 or more
// mirrors everything.
//
// Keys are hashed with a different seed from Split.Pick, so the mirrored
// keys are spread evenly over the versions of a split.
func ShouldMirror(key string, share float64, r uint64) bool {
	switch {
	case math.IsNaN(share) || share <= 0:
		return false
	case share >= 100:
		return true
	}
	p := r >> 11
	if key != "" {
		d := xxhash.NewWithSeed(shadowSeed)
		_, _ = d.WriteString(key)
		p = d.Sum64() >> 11
	}
	return p < uint64(share/100*splitScale)
}
