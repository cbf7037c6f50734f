package federated

import (
	"math"
	"math/rand/v2"
	"slices"
)

// PartitionIID shuffles the indices 0..n-1 and deals them into clients
// lists whose sizes differ by at most one.
//
// All partitioners return one index list per client, each in increasing
// order; the same arguments and a generator in the same state give the
// same partition. Invalid arguments (no clients, a negative size, a nil
// generator, a non-positive or infinite alpha, a label outside [0,
// classes)) give nil. Every index is given to exactly one client, except
// in PartitionKClasses when some class is held by no client.
func PartitionIID(n, clients int, rng *rand.Rand) [][]int {
	if n < 0 || clients < 1 || rng == nil {
		return nil
	}
	perm := rng.Perm(n)
	parts := make([][]int, clients)
	for c := range clients {
		lo, hi := c*n/clients, (c+1)*n/clients
		parts[c] = append([]int(nil), perm[lo:hi]...)
	}
	return sortParts(parts)
}

// PartitionDirichlet gives each client a label distribution drawn from a
// symmetric Dirichlet(alpha): for every class, its shuffled indices are
// split among the clients in proportions drawn from Dirichlet(alpha, ...,
// alpha). Small alpha (0.1) gives each client few dominant classes; large
// alpha (100) approaches an IID split.
//
// The draws can leave a client without samples. When len(labels) >=
// clients, each empty client, in client order, then takes one index from
// the client holding the most (the lowest-numbered such client gives up
// its largest index), so no client is empty; with fewer samples than
// clients some clients are necessarily empty.
func PartitionDirichlet(labels []int32, classes, clients int, alpha float64, rng *rand.Rand) [][]int {
	byClass := groupByClass(labels, classes)
	if byClass == nil || clients < 1 || !validAlpha(alpha) || rng == nil {
		return nil
	}
	parts := make([][]int, clients)
	props := make([]float64, clients)
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		sampleDirichlet(props, alpha, rng)
		splitByProportions(parts, idx, props)
	}
	fillEmpty(parts)
	return sortParts(parts)
}

// PartitionQuantitySkew gives every client IID samples but a share of the
// n indices drawn from a symmetric Dirichlet(alpha): small alpha gives a
// few large clients and many small ones. When n >= clients no client is
// empty: empty clients take one index each from the largest, as in
// PartitionDirichlet.
func PartitionQuantitySkew(n, clients int, alpha float64, rng *rand.Rand) [][]int {
	if n < 0 || clients < 1 || !validAlpha(alpha) || rng == nil {
		return nil
	}
	props := make([]float64, clients)
	sampleDirichlet(props, alpha, rng)
	parts := make([][]int, clients)
	splitByProportions(parts, rng.Perm(n), props)
	fillEmpty(parts)
	return sortParts(parts)
}

// PartitionKClasses gives each client samples of at most k distinct
// classes (the "pathological non-IID" split of McMahan et al.). The
// classes that occur in labels are shuffled and dealt round-robin, client
// c holding the k classes at positions c*k .. c*k+k-1 (modulo the number
// of classes present); each class's shuffled indices are then split evenly
// among the clients holding it. k is capped at the number of classes
// present.
//
// When clients*k is below the number of classes present, the classes no
// client holds are left out: their indices are in no list. A client can
// be empty only when its classes have fewer samples than holders.
func PartitionKClasses(labels []int32, classes, clients, k int, rng *rand.Rand) [][]int {
	byClass := groupByClass(labels, classes)
	if byClass == nil || clients < 1 || k < 1 || rng == nil {
		return nil
	}
	var present []int
	for c, idx := range byClass {
		if len(idx) > 0 {
			present = append(present, c)
		}
	}
	parts := make([][]int, clients)
	if len(present) == 0 {
		return parts
	}
	k = min(k, len(present))
	rng.Shuffle(len(present), func(i, j int) { present[i], present[j] = present[j], present[i] })
	holders := make([][]int, classes)
	for c := range clients {
		for j := range k {
			class := present[(c*k+j)%len(present)]
			holders[class] = append(holders[class], c)
		}
	}
	for class, idx := range byClass {
		h := holders[class]
		if len(h) == 0 {
			continue
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for i, c := range h {
			lo, hi := i*len(idx)/len(h), (i+1)*len(idx)/len(h)
			parts[c] = append(parts[c], idx[lo:hi]...)
		}
	}
	return sortParts(parts)
}

// groupByClass returns the indices of each class, or nil when classes < 1
// or a label is out of range.
func groupByClass(labels []int32, classes int) [][]int {
	if classes < 1 {
		return nil
	}
	counts := make([]int, classes)
	for _, y := range labels {
		if y < 0 || int(y) >= classes {
			return nil
		}
		counts[y]++
	}
	byClass := make([][]int, classes)
	for c, n := range counts {
		byClass[c] = make([]int, 0, n)
	}
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
	}
	return byClass
}

func validAlpha(alpha float64) bool { return alpha > 0 && !math.IsInf(alpha, 0) }

// splitByProportions appends idx to parts in consecutive runs whose
// lengths follow props (which sum to 1): client c gets
// idx[round(P(c-1)*n) : round(P(c)*n)] where P is the cumulative sum.
func splitByProportions(parts [][]int, idx []int, props []float64) {
	n := len(idx)
	var cum float64
	lo := 0
	for c, p := range props {
		cum += p
		hi := int(math.Round(cum * float64(n)))
		if c == len(props)-1 {
			hi = n
		}
		hi = min(max(hi, lo), n)
		parts[c] = append(parts[c], idx[lo:hi]...)
		lo = hi
	}
}

// fillEmpty moves one index from the largest client to each empty client
// while the largest has more than one.
func fillEmpty(parts [][]int) {
	for c := range parts {
		if len(parts[c]) > 0 {
			continue
		}
		big := 0
		for i := range parts {
			if len(parts[i]) > len(parts[big]) {
				big = i
			}
		}
		if len(parts[big]) < 2 {
			return
		}
		// Take the largest index, so the result does not depend on the
		// order indices were appended in.
		at := 0
		for i, v := range parts[big] {
			if v > parts[big][at] {
				at = i
			}
		}
		parts[c] = append(parts[c], parts[big][at])
		parts[big] = append(parts[big][:at], parts[big][at+1:]...)
	}
}

// sampleDirichlet fills p with a draw from the symmetric Dirichlet(alpha)
// distribution. It draws log-Gamma(alpha) variates and normalises them in
// log space, so tiny alphas whose Gamma draws underflow float64 still give
// a valid distribution.
func sampleDirichlet(p []float64, alpha float64, rng *rand.Rand) {
	hi := math.Inf(-1)
	for i := range p {
		p[i] = logGamma(alpha, rng)
		hi = max(hi, p[i])
	}
	if math.IsInf(hi, -1) {
		// Every draw underflowed (alpha near the smallest float64): the
		// limit is all mass on one client.
		clear(p)
		p[rng.IntN(len(p))] = 1
		return
	}
	var sum float64
	for i := range p {
		p[i] = math.Exp(p[i] - hi)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
}

// logGamma returns the logarithm of a Gamma(alpha, 1) variate (Marsaglia
// and Tsang; for alpha < 1, Gamma(alpha+1) * U^(1/alpha) in log space).
func logGamma(alpha float64, rng *rand.Rand) float64 {
	boost := 0.0
	if alpha < 1 {
		u := rng.Float64()
		for u == 0 {
			u = rng.Float64()
		}
		boost = math.Log(u) / alpha
		alpha++
	}
	d := alpha - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || (u > 0 && math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v))) {
			return math.Log(d*v) + boost
		}
	}
}

// sortParts sorts every list in place and returns parts.
func sortParts(parts [][]int) [][]int {
	for _, p := range parts {
		slices.Sort(p)
	}
	return parts
}
