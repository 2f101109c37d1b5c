package llmroutingexporter

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/config/confighttp"

	"github.com/servescope/servescope/internal/schema"
)

// Config configures the llm_routing exporter.
type Config struct {
	// ServerConfig is where routers and autoscalers read (endpoint, TLS, auth, CORS: confighttp's server settings).
	confighttp.ServerConfig `mapstructure:",squash"`
	// Stale is the age beyond which a replica's telemetry is not served as fresh: it is reported unhealthy,
	// its routing score is 0, and its model-server endpoint answers 503 (which an endpoint picker treats as
	// saturated).
	Stale time.Duration `mapstructure:"stale"`
	// ReplicaKeys name the resource or data point attribute that identifies a replica, first present wins.
	ReplicaKeys []string `mapstructure:"replica_keys"`
	// MaxReplicas bounds the replicas served; the one updated longest ago is forgotten first.
	MaxReplicas int `mapstructure:"max_replicas"`
}

func createDefaultConfig() *Config {
	server := confighttp.NewDefaultServerConfig()
	server.NetAddr.Endpoint = "localhost:9465"
	return &Config{ServerConfig: server, Stale: 30 * time.Second,
		ReplicaKeys: []string{schema.AttrServiceInstanceID, schema.AttrServerAddress}, MaxReplicas: 4096}
}

// Validate says which field is wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.NetAddr.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: an address to listen on is needed"))
	}
	if c.Stale <= 0 {
		errs = append(errs, fmt.Errorf("stale: must be positive, got %s", c.Stale))
	}
	if len(c.ReplicaKeys) == 0 {
		errs = append(errs, errors.New("replica_keys: at least one attribute is needed"))
	}
	if c.MaxReplicas <= 0 {
		errs = append(errs, fmt.Errorf("max_replicas: must be positive, got %d", c.MaxReplicas))
	}
	return errors.Join(errs...)
}
