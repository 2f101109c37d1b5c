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

// DefaultSampleLimit bounds the samples one scrape may hold. A vLLM page has about 1,500 (every histogram
// bucket counts); 50,000 leaves room for many models and LoRA adapters, while a page of a quarter million
// series (16 MiB of short lines) would otherwise cost the collector about a gigabyte.
const DefaultSampleLimit = 50000

// Config is what every engine receiver shares. Engine receivers embed it (squashed), so users write
// `endpoint`, `collection_interval`, `timeout`, `tls`, `headers`, `auth`, ... directly under the receiver.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	confighttp.ClientConfig        `mapstructure:",squash"`

	// MetricsPath is the Prometheus endpoint's path; each engine receiver sets its engine's default.
	MetricsPath string `mapstructure:"metrics_path"`
	// MaxBodySize caps the bytes read per scrape; a larger body is cut there and what came before is kept.
	MaxBodySize int64 `mapstructure:"max_body_size"`
	// SampleLimit is the most samples a scrape may hold (0: no limit). A scrape with more is rejected as a
	// whole, as Prometheus' sample_limit does: keeping an arbitrary part would make sums and ratios lie.
	SampleLimit int `mapstructure:"sample_limit"`
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
		SampleLimit:      DefaultSampleLimit,
	}
}

// Validate reports every problem at once, naming the key a user has to fix. The endpoint appears in errors
// only with its password replaced (see RedactURL).
func (c *Config) Validate() error {
	var errs []error
	shown := RedactURL(c.Endpoint)
	if c.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set, e.g. http://localhost:8000"))
	} else if u, err := url.Parse(c.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("endpoint %q: %s", shown, describeURLError(c.Endpoint, err)))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("endpoint %q: scheme must be http or https", shown))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint %q: no host", shown))
	} else if u.User != nil && (c.Auth.HasValue() || hasHeader(c, "Authorization")) {
		errs = append(errs, fmt.Errorf("endpoint %q: credentials in the URL and an `auth` extension or Authorization header "+
			"are both set; use one (the URL's are sent as basic auth; for anything else use an auth extension such as "+
			"basicauth, bearertokenauth or oauth2client under `auth`)", shown))
	}
	if !strings.HasPrefix(c.MetricsPath, "/") {
		errs = append(errs, fmt.Errorf("metrics_path %q: must start with /", c.MetricsPath))
	}
	if c.MaxBodySize <= 0 {
		errs = append(errs, fmt.Errorf("max_body_size: must be positive, got %d", c.MaxBodySize))
	}
	if c.SampleLimit < 0 {
		errs = append(errs, fmt.Errorf("sample_limit: must be 0 (no limit) or positive, got %d", c.SampleLimit))
	}
	if c.CollectionInterval <= 0 {
		errs = append(errs, fmt.Errorf("collection_interval: must be positive, got %s", c.CollectionInterval))
	}
	return errors.Join(errs...)
}

func hasHeader(c *Config, name string) bool {
	for k := range c.Headers.Iter {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// describeURLError says why an endpoint does not parse. url.Parse's error quotes the whole URL and its inner
// errors quote pieces of it (the "port" of "user:pa/ss@host" is the start of the password), so with
// credentials in the URL only a generic reason is given.
func describeURLError(raw string, err error) string {
	if strings.Contains(raw, "@") {
		return "not a valid URL (percent-encode reserved characters such as / # ? @ : in the user name and password)"
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return err.Error()
}

// redactedPassword replaces credentials wherever an endpoint is logged or quoted in an error.
const redactedPassword = "xxxxx"

// RedactURL returns a URL fit for logs and errors: http://user:pw@host becomes http://user:xxxxx@host (the user
// name tells an operator which credentials were used). A user name alone, http://token@host, may well be a
// token and becomes http://xxxxx@host. It works on the text, not on a parsed URL, so that an endpoint that
// does not parse (a password with an unescaped '/') is redacted too: everything between the scheme and the
// last '@' is credentials.
func RedactURL(raw string) string {
	authority := raw
	prefix := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, authority = raw[:i+3], raw[i+3:]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	userinfo, rest := authority[:at], authority[at+1:]
	if colon := strings.IndexByte(userinfo, ':'); colon >= 0 && !strings.ContainsAny(userinfo[:colon], "/?#") {
		return prefix + userinfo[:colon] + ":" + redactedPassword + "@" + rest
	}
	return prefix + redactedPassword + "@" + rest
}

// redactedUser is RedactURL's rewrite of parsed credentials.
func redactedUser(user *url.Userinfo) string {
	if _, hasPassword := user.Password(); hasPassword {
		return url.User(user.Username()).String() + ":" + redactedPassword
	}
	return redactedPassword
}

// target is the parsed endpoint: the URLs to scrape and the replica identity it implies.
type target struct {
	metricsURL string
	baseURL    string
	// user holds the credentials of the endpoint URL, sent as basic auth to metricsURL and baseURL's paths
	// (never to other hosts, such as Ray's dashboard); the URLs themselves carry none.
	user     *url.Userinfo
	redacted string // metricsURL as logged: with the user name and without the password
	host     string
	port     string
	instance string // host:port, the replica's service.instance.id unless overridden
}

func newTarget(endpoint, metricsPath string) (target, error) {
	base, user, err := splitCredentials(endpoint)
	if err != nil {
		return target{}, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return target{}, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	redacted := base + metricsPath
	if user != nil {
		redacted = u.Scheme + "://" + redactedUser(user) + "@" + u.Host + u.Path + metricsPath
	}
	return target{
		metricsURL: base + metricsPath,
		baseURL:    base,
		user:       user,
		redacted:   redacted,
		host:       u.Hostname(),
		port:       port,
		instance:   net.JoinHostPort(u.Hostname(), port), // [::1]:8000, unambiguous for IPv6
	}, nil
}

// splitCredentials parses an http(s) URL into the URL without user info, query or fragment and trailing
// slash, and its credentials. Its error never quotes the URL.
func splitCredentials(endpoint string) (string, *url.Userinfo, error) {
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil {
		return "", nil, errors.New(describeURLError(endpoint, err))
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), u.User, nil
}
