package vllmreceiver

import (
	"github.com/servescope/servescope/internal/enginescrape"
)

// Config is the vllm receiver's configuration: the shared engine-scrape settings (endpoint, interval,
// timeout, TLS, auth, headers, metrics_path, max_body_size, resource_attributes).
type Config struct {
	enginescrape.Config `mapstructure:",squash"`
}

// Validate checks the shared settings; vLLM adds none of its own.
func (c *Config) Validate() error { return c.Config.Validate() }
