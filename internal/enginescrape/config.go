package enginescrape

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/scraper/scraperhelper"
)

// DefaultMaxBodySize bounds what one scrape reads. A vLLM /metrics body is about 100 KB; 16 MiB leaves room
// for very wide label sets while keeping a runaway endpoint from exhausting the sidecar's memory.
const DefaultMaxBodySize = 16 << 20

// Config is what every engine receiver shares. Engine receivers embed it (squashed), so users write
// `endpoint`, `collection_interval`, `timeout`, `tls`, `headers`, `auth`, ... directly under the receiver.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	confighttp.ClientConfig        `mapstructure:",squash"`

	// MetricsPath is the Prometheus endpoint's path; each engine receiver sets its engine's default.
	MetricsPath string `mapstructure:"metrics_path"`
	// MaxBodySize caps the bytes read per scrape; a larger body is cut there and what came before is kept.
	MaxBodySize int64 `mapstructure:"max_body_size"`
	// ResourceAttributes are added to (and override) the resource attributes the receiver sets.
	ResourceAttributes map[string]string `mapstructure:"resource_attributes"`

	_ struct{}
}

// NewDefaultConfig returns the shared defaults with the engine's usual endpoint and metrics path.
func NewDefaultConfig(endpoint, metricsPath string) Config {
	controller := scraperhelper.NewDefaultControllerConfig()
	controller.CollectionInterval = 10 * time.Second
	controller.Timeout = 5 * time.Second
	client := confighttp.NewDefaultClientConfig()
	client.Endpoint = endpoint
	client.Timeout = 5 * time.Second
	return Config{
		ControllerConfig: controller,
		ClientConfig:     client,
		MetricsPath:      metricsPath,
		MaxBodySize:      DefaultMaxBodySize,
	}
}

// Validate reports every problem at once, naming the key a user has to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set, e.g. http://localhost:8000"))
	} else if u, err := url.Parse(c.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("endpoint %q: scheme must be http or https", c.Endpoint))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint %q: no host", c.Endpoint))
	}
	if !strings.HasPrefix(c.MetricsPath, "/") {
		errs = append(errs, fmt.Errorf("metrics_path %q: must start with /", c.MetricsPath))
	}
	if c.MaxBodySize <= 0 {
		errs = append(errs, fmt.Errorf("max_body_size: must be positive, got %d", c.MaxBodySize))
	}
	if c.CollectionInterval <= 0 {
		errs = append(errs, fmt.Errorf("collection_interval: must be positive, got %s", c.CollectionInterval))
	}
	return errors.Join(errs...)
}

// target is the parsed endpoint: the URLs to scrape and the replica identity it implies.
type target struct {
	metricsURL string
	baseURL    string
	host       string
	port       string
	instance   string // host:port, the replica's service.instance.id unless overridden
}

func newTarget(endpoint, metricsPath string) (target, error) {
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil {
		return target{}, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	base := u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/")
	return target{
		metricsURL: base + metricsPath,
		baseURL:    base,
		host:       u.Hostname(),
		port:       port,
		instance:   net.JoinHostPort(u.Hostname(), port), // [::1]:8000, unambiguous for IPv6
	}, nil
}
