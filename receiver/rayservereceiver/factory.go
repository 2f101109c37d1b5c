// Package rayservereceiver scrapes Ray Serve: the Ray metrics-export endpoint (ray_serve_* families, and the
// ray_vllm_* / ray_vllm:* engine families Ray Serve LLM replicas re-export) and the dashboard's Serve REST
// API for application, deployment and replica states. Vendor names pass through; llm_normalize maps them.
package rayservereceiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/internal/schema"
	"github.com/servescope/servescope/receiver/rayservereceiver/internal/metadata"
)

// KubeRay exposes the metrics-export port as 8080 ("metrics"); the Ray dashboard listens on 8265.
const (
	defaultEndpoint  = "http://localhost:8080"
	defaultDashboard = "http://localhost:8265"
)

// Config adds the dashboard to the shared engine-scrape settings.
type Config struct {
	enginescrape.Config `mapstructure:",squash"`
	// DashboardEndpoint is the Ray dashboard, for the Serve REST API; "" turns those states off (on worker
	// nodes, only the head runs a dashboard).
	DashboardEndpoint string `mapstructure:"dashboard_endpoint"`
}

// Validate checks the shared settings and the dashboard URL.
func (c *Config) Validate() error {
	errs := []error{c.Config.Validate()}
	if c.DashboardEndpoint != "" {
		if u, err := url.Parse(c.DashboardEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("dashboard_endpoint %q: must be an http(s) URL such as %s",
				enginescrape.RedactURL(c.DashboardEndpoint), defaultDashboard))
		}
	}
	return errors.Join(errs...)
}

// NewFactory creates the ray_serve receiver factory.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(metadata.Type,
		func() component.Config {
			return &Config{Config: enginescrape.NewDefaultConfig(defaultEndpoint, "/metrics"), DashboardEndpoint: defaultDashboard}
		},
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			c := cfg.(*Config)
			return enginescrape.NewMetricsReceiver(set, &c.Config, engineFor(c), byNode{next})
		}, metadata.MetricsStability))
}

// telemetry is this receiver's self-telemetry, from its metadata.yaml, for the shared scraper.
var telemetry = enginescrape.TelemetryFrom(metadata.NewTelemetryBuilder, func(tb *metadata.TelemetryBuilder) enginescrape.Telemetry {
	return enginescrape.Telemetry{
		ScrapeFailures: tb.EngineScrapeFailures, RejectedLines: tb.EngineScrapeRejectedLines,
		DroppedPoints: tb.EngineScrapeDroppedPoints, CounterResets: tb.EngineCounterResets,
	}
})

func engineFor(c *Config) enginescrape.Engine {
	e := enginescrape.Engine{
		Name: schema.EngineRayServe,
		Receiver: enginescrape.Metadata{
			Type: metadata.Type, ScopeName: metadata.ScopeName, MetricsStability: metadata.MetricsStability,
			Telemetry: telemetry,
		},
	}
	if c.DashboardEndpoint != "" {
		e.State = []enginescrape.StateEndpoint{{
			Name: "serve_applications", BaseURL: c.DashboardEndpoint, Paths: []string{"/api/serve/applications/"},
			MaxBodySize: 8 << 20, Parse: parseApplications,
		}}
	}
	return e
}

// The parts of ServeInstanceDetails the receiver reads.
type serveDetails struct {
	Applications map[string]struct {
		Deployments map[string]struct {
			Status           *string `json:"status"`
			TargetNumReplica *int    `json:"target_num_replicas"`
			Replicas         []struct {
				State *string `json:"state"`
			} `json:"replicas"`
		} `json:"deployments"`
	} `json:"applications"`
}

// parseApplications reports, per deployment, its replicas by state, its target and its status.
func parseApplications(body []byte, out *enginescrape.StateOutput) error {
	var d serveDetails
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("serve applications: %w", err)
	}
	for _, app := range slices.Sorted(maps.Keys(d.Applications)) {
		deployments := d.Applications[app].Deployments
		for _, dep := range slices.Sorted(maps.Keys(deployments)) {
			details := deployments[dep]
			byState := map[string]int{}
			for _, r := range details.Replicas {
				if r.State != nil {
					byState[*r.State]++
				}
			}
			for _, state := range slices.Sorted(maps.Keys(byState)) {
				out.Gauge(schema.MetricLLMServeReplicas, float64(byState[state]),
					schema.AttrLLMServeApplication, app, schema.AttrLLMServeDeployment, dep, schema.AttrLLMServeReplicaState, state)
			}
			if details.TargetNumReplica != nil {
				out.Gauge(schema.MetricLLMServeReplicasTarget, float64(*details.TargetNumReplica),
					schema.AttrLLMServeApplication, app, schema.AttrLLMServeDeployment, dep)
			}
			if details.Status != nil {
				out.Gauge(schema.MetricLLMServeDeploymentUp, 1,
					schema.AttrLLMServeApplication, app, schema.AttrLLMServeDeployment, dep, schema.AttrLLMServeDeploymentStatus, *details.Status)
			}
		}
	}
	return nil
}
