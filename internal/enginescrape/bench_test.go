package enginescrape

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/servescope/servescope/internal/fixtures"
)

// BenchmarkExpositionToMetrics is a scrape's CPU cost without the network: parse a real capture and convert
// it to OTLP metrics with start times.
func BenchmarkExpositionToMetrics(b *testing.B) {
	for _, rel := range fixtures.Glob(b, "vllm/*.txt") {
		body := fixtures.Read(b, rel)
		b.Run(path.Base(rel), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			points := ExpositionToMetrics(body, time.Now()).DataPointCount()
			for b.Loop() {
				ExpositionToMetrics(body, time.Now())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(points), "ns/datapoint")
		})
	}
}

// oversizedPage is what an attacker (or a label-cardinality bug) can serve under max_body_size: 16 MiB of
// short, unique series, about 230,000 of them.
func oversizedPage() []byte {
	var b strings.Builder
	b.WriteString("# HELP vllm:flood A series per line.\n# TYPE vllm:flood gauge\n")
	line := func(i int) string {
		return fmt.Sprintf("vllm:flood{engine=\"0\",model_name=\"qwen\",request_id=\"%012d\"} 1\n", i)
	}
	for i := 0; b.Len()+len(line(i)) < DefaultMaxBodySize; i++ {
		b.WriteString(line(i))
	}
	return []byte(b.String())
}

// BenchmarkOversizedPage is one scrape of oversizedPage over HTTP: with no sample_limit (what every scrape
// cost before there was one) and with the default, which rejects the page after parsing sample_limit+1
// samples. live-MiB is the heap still held after the scrape, by what it returned (the pipeline holds that).
func BenchmarkOversizedPage(b *testing.B) {
	page := oversizedPage()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(page))) // as vLLM (Starlette) and llama.cpp send it
		_, _ = w.Write(page)
	}))
	b.Cleanup(srv.Close)
	for _, limit := range []int{0, DefaultSampleLimit} {
		b.Run(fmt.Sprintf("sample_limit=%d", limit), func(b *testing.B) {
			cfg := NewDefaultConfig(srv.URL, "/metrics")
			cfg.SampleLimit = limit
			s, err := NewScraper(&cfg, Engine{Receiver: StandInReceiver, Name: "vllm"}, receivertest.NewNopSettings(component.MustNewType("vllm")))
			require.NoError(b, err)
			require.NoError(b, s.Start(context.Background(), componenttest.NewNopHost()))
			b.Cleanup(func() { _ = s.Shutdown(context.Background()) })

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			md, err := s.Scrape(context.Background())
			require.NoError(b, err)
			runtime.GC()
			runtime.ReadMemStats(&after)
			live := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
			points := md.DataPointCount()
			runtime.KeepAlive(md)

			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Scrape(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(live, "live-MiB")
			b.ReportMetric(float64(points), "points")
		})
	}
}
