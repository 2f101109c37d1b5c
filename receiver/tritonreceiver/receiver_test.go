package tritonreceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/enginescrape/enginescrapetest"
	"github.com/servescope/servescope/internal/fixtures"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/tritonreceiver/internal/metadata"
)

func TestScrapesEveryTritonCapture(t *testing.T) {
	for _, rel := range fixtures.Glob(t, "triton_trtllm/*.txt") {
		t.Run(rel, func(t *testing.T) {
			body := fixtures.Read(t, rel)
			srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{"/metrics": {Body: body}})
			r := enginescrapetest.NewRig(t, metadata.Type, NewFactory().CreateDefaultConfig().(*enginescrape.Config), engine, srv.URL)
			md := r.Scrape(t, 2)
			assert.Equal(t, map[string]float64{"": 1}, enginescrapetest.Gauges(md, schema.MetricLLMEngineUp))
			assert.Equal(t, "triton", md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()[schema.AttrLLMEngineName])
			assert.Zero(t, r.Warnings(), "real captures parse cleanly")
			if want := fixtures.Samples(body, "nv_inference_pending_request_count"); len(want) > 0 {
				assert.Len(t, enginescrapetest.Gauges(md, "nv_inference_pending_request_count"), len(want))
			}
		})
	}
}

func TestReceiverLifecycle(t *testing.T) {
	srv := enginescrapetest.NewServer(t, map[string]enginescrapetest.Route{
		"/metrics": {Body: fixtures.Read(t, "triton_trtllm/datadog_nvidia_triton_metrics.txt")},
	})
	enginescrapetest.CheckLifecycle(t, NewFactory(), srv.URL)
}
