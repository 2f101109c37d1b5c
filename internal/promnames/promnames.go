// Package promnames says what a canonical metric is called once the collector's prometheus exporter (or
// prometheus_remote_write) has written it: dots to underscores, a unit suffix, and _total on counters. The
// dashboards and alert rules are generated with it, so they use the names Prometheus actually stores.
package promnames

import (
	"strings"

	"github.com/servescope/servescope/internal/schema"
)

// unitSuffixes are the UCUM units the schema uses, as the exporter spells them (annotations such as
// {request} have none).
var unitSuffixes = map[string]string{
	"s": "seconds", "ms": "milliseconds", "By": "bytes", "By/s": "bytes_per_second", "Hz": "hertz", "W": "watts",
	"J": "joules", "Cel": "celsius", "1": "ratio",
}

// Name is the metric's name in Prometheus: for histograms, the family (add _bucket, _sum, _count).
func Name(m *schema.Metric) string {
	name := strings.NewReplacer(".", "_", "-", "_", "/", "_").Replace(m.Name)
	if suffix := unitSuffixes[m.Unit]; suffix != "" && !strings.HasSuffix(name, "_"+suffix) {
		// a unit of "1" reads as a ratio on gauges only
		if !(m.Unit == "1" && m.Instrument != schema.Gauge) {
			name += "_" + suffix
		}
	}
	if m.Instrument == schema.Counter {
		name += "_total"
	}
	return name
}

// Label is an attribute's name as a Prometheus label.
func Label(attribute string) string {
	return strings.NewReplacer(".", "_", "-", "_").Replace(attribute)
}
