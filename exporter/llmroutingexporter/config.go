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
	// MaxPools bounds the models whose scaling signals are kept. At the bound, a model not seen before is
	// refused (counted, logged once) until an expired pool makes room; the pools already served stay.
	MaxPools int `mapstructure:"max_pools"`
	// PoolExpiry is how long a pool is kept after the last word about its model: its own scaling signal or
	// any of its replicas' telemetry. Past it, the pool is forgotten and its scale endpoint answers 404.
	// At least Stale, so that a pool goes stale (503) before it goes away.
	PoolExpiry time.Duration `mapstructure:"pool_expiry"`
}

func createDefaultConfig() *Config {
	server := confighttp.NewDefaultServerConfig()
	server.NetAddr.Endpoint = "localhost:9465"
	return &Config{
		ServerConfig: server, Stale: 30 * time.Second,
		ReplicaKeys: []string{schema.AttrServiceInstanceID, schema.AttrServerAddress}, MaxReplicas: 4096,
		MaxPools: 1000, PoolExpiry: 5 * time.Minute,
	}
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
	if c.MaxPools < 1 {
		errs = append(errs, fmt.Errorf("max_pools: must be at least 1, got %d", c.MaxPools))
	}
	if c.PoolExpiry < c.Stale {
		errs = append(errs, fmt.Errorf("pool_expiry: must be at least stale (%s), so that a pool is served as stale before it is forgotten; got %s", c.Stale, c.PoolExpiry))
	}
	return errors.Join(errs...)
}
