package edgesim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// catalog is the set of models clients ask for.
type catalog struct {
	names   []string        // "model-0042"
	keys    []string        // "model-0042@1", the model cache key
	digests []string        // fake sha256 digests, for respcache keys
	bytes   []int64         // sizes
	service []time.Duration // service time at normal speed
	pop     []float64       // request probability (Zipf), most popular first
	cdf     []float64
	index   map[string]int // key → model
	total   int64          // bytes of the whole catalogue
	meanSvc time.Duration
}

// newCatalog draws model sizes (log-normal, clamped) and Zipf popularity.
func newCatalog(cfg Config, r *rand.Rand) *catalog {
	n := cfg.Models
	c := &catalog{
		names: make([]string, n), keys: make([]string, n), digests: make([]string, n),
		bytes: make([]int64, n), service: make([]time.Duration, n), pop: make([]float64, n),
		index: make(map[string]int, n),
	}
	sum := 0.0
	for i := range n {
		c.names[i] = fmt.Sprintf("model-%04d", i)
		c.keys[i] = c.names[i] + "@1"
		c.index[c.keys[i]] = i
		c.digests[i] = fmt.Sprintf("sha256:%064x", uint64(i)*0x9e3779b97f4a7c15^cfg.Seed)
		mb := cfg.ModelMedianMB * math.Exp(cfg.ModelSigma*r.NormFloat64())
		mb = math.Max(minModelMB, math.Min(maxModelMB, mb))
		c.bytes[i] = int64(mb * 1e6)
		c.total += c.bytes[i]
		c.service[i] = cfg.ServiceBase + time.Duration(mb*float64(cfg.ServicePerMB))
		c.pop[i] = 1 / math.Pow(float64(i+1), cfg.ZipfS)
		sum += c.pop[i]
	}
	c.cdf = make([]float64, n)
	acc, mean := 0.0, 0.0
	for i := range n {
		c.pop[i] /= sum
		acc += c.pop[i]
		c.cdf[i] = acc
		mean += c.pop[i] * float64(c.service[i])
	}
	c.cdf[n-1] = 1
	c.meanSvc = time.Duration(mean)
	return c
}

// sample draws a model by popularity.
func (c *catalog) sample(r *rand.Rand) int {
	return sampleCDF(c.cdf, r.Float64())
}

// sampleCDF returns the first index whose cumulative probability exceeds u.
func sampleCDF(cdf []float64, u float64) int {
	i := sort.SearchFloat64s(cdf, u)
	if i < len(cdf) && cdf[i] == u {
		i++
	}
	return min(i, len(cdf)-1)
}

// zipfCDF returns the cumulative distribution of Zipf(s) over n ranks.
func zipfCDF(n int, s float64) []float64 {
	cdf := make([]float64, n)
	acc := 0.0
	for i := range n {
		acc += 1 / math.Pow(float64(i+1), s)
		cdf[i] = acc
	}
	for i := range cdf {
		cdf[i] /= acc
	}
	return cdf
}
