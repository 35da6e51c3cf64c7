package benche2e

import (
	"math"
	"slices"
	"time"
)

// Latencies are the request latencies of one run. Every sample is kept (a
// few hundred thousand at most, 8 bytes each), so percentiles are exact
// rather than bucketed.
type Latencies []time.Duration

// Sorted returns the samples in increasing order, sorting in place.
func (l Latencies) Sorted() Latencies {
	slices.Sort(l)
	return l
}

// Percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted samples:
// the smallest sample that at least q of all samples are less than or equal
// to. It is 0 for no samples.
func (l Latencies) Percentile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(l)))) - 1
	rank = max(0, min(rank, len(l)-1))
	return l[rank]
}

// Median is the median of xs (the mean of the two middle values for an even
// count), without reordering xs. It is 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
