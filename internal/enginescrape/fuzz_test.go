package enginescrape

import (
	"testing"
	"time"

	"github.com/servescope/servescope/internal/fixtures"
)

// FuzzExpositionToMetrics: whatever an engine sends, conversion never panics and emits only well-formed
// histograms (bucket counts add up to the count, one more bucket than bounds).
func FuzzExpositionToMetrics(f *testing.F) {
	for _, rel := range fixtures.Glob(f, "*/*.txt") {
		f.Add(fixtures.Read(f, rel))
	}
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"0.5\"} 7\nh_bucket{le=\"+Inf\"} 3\nh_count 2\n"))
	f.Add([]byte("# TYPE c counter\nc_total 1\nc_created -1\nc_total NaN\n# TYPE s summary\ns{quantile=\"x\"} 1\ns_count -3\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		md := ExpositionToMetrics(body, time.Unix(1700000000, 0))
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		for i := 0; i < ms.Len(); i++ {
			m := ms.At(i)
			if m.Name() == "" {
				t.Fatal("metric without a name")
			}
			if m.Type().String() != "Histogram" {
				continue
			}
			for j := 0; j < m.Histogram().DataPoints().Len(); j++ {
				dp := m.Histogram().DataPoints().At(j)
				if dp.BucketCounts().Len() != dp.ExplicitBounds().Len()+1 {
					t.Fatalf("%s: %d buckets for %d bounds", m.Name(), dp.BucketCounts().Len(), dp.ExplicitBounds().Len())
				}
				var total uint64
				for _, c := range dp.BucketCounts().AsRaw() {
					total += c
				}
				if total != dp.Count() {
					t.Fatalf("%s: buckets add up to %d, count is %d", m.Name(), total, dp.Count())
				}
			}
		}
	})
}
