package enginescrape

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/servescope/servescope/internal/datapoints"
	"github.com/servescope/servescope/internal/fixtures"
)

// FuzzExpositionToMetrics: whatever an engine sends, conversion never panics, emits only well-formed
// histograms (bucket counts add up to the count, one more bucket than bounds), no infinite value, and no
// two points of one metric with the same attributes.
func FuzzExpositionToMetrics(f *testing.F) {
	for _, rel := range fixtures.Glob(f, "*/*.txt") {
		f.Add(fixtures.Read(f, rel))
	}
	// Pages written from an engine's source where no capture is public (LMDeploy, ...) live in the receivers'
	// own testdata; they are seeds too, since this parser is theirs.
	pages, err := filepath.Glob(filepath.Join("..", "..", "receiver", "*", "testdata", "*.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, page := range pages {
		body, err := os.ReadFile(page)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"0.5\"} 7\nh_bucket{le=\"+Inf\"} 3\nh_count 2\n"))
	f.Add([]byte("# TYPE c counter\nc_total 1\nc_created -1\nc_total NaN\n# TYPE s summary\ns{quantile=\"x\"} 1\ns_count -3\n"))
	f.Add([]byte("# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\ng{b=\"2\",a=\"1\"} +Inf\n# HELP u x\nu 1\nu_total 2\n" +
		"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum -Inf\n# TYPE s summary\ns{quantile=\"1\"} Inf\ns_count 1\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		md := ExpositionToMetrics(body, time.Unix(1700000000, 0))
		ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
		forEachNumber(md, func(name string, v float64) {
			if math.IsInf(v, 0) {
				t.Fatalf("%s: infinite value", name)
			}
		})
		for i := 0; i < ms.Len(); i++ {
			m := ms.At(i)
			if m.Name() == "" {
				t.Fatal("metric without a name")
			}
			seen := map[string]bool{}
			datapoints.EachAttributes(m, func(attrs pcommon.Map) {
				key := fmt.Sprint(attrs.AsRaw()) // fmt prints maps sorted by key
				if seen[key] {
					t.Fatalf("%s: two points with attributes %s", m.Name(), key)
				}
				seen[key] = true
			})
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
