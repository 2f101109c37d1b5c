package vllmreceiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/servescope/servescope/internal/enginescrape"
	"github.com/servescope/servescope/receiver/vllmreceiver/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	load := func(t *testing.T, name string) (*enginescrape.Config, error) {
		cfg := NewFactory().CreateDefaultConfig().(*enginescrape.Config)
		id := component.NewID(metadata.Type)
		if name != "" {
			id = component.NewIDWithName(metadata.Type, name)
		}
		sub, err := cm.Sub(id.String())
		require.NoError(t, err)
		require.NoError(t, sub.Unmarshal(cfg))
		return cfg, confmap.Validate(cfg)
	}

	t.Run("defaults", func(t *testing.T) {
		cfg, err := load(t, "")
		require.NoError(t, err)
		assert.Equal(t, "http://localhost:8000", cfg.Endpoint)
		assert.Equal(t, "/metrics", cfg.MetricsPath)
		assert.Equal(t, 10*time.Second, cfg.CollectionInterval)
		assert.Equal(t, 5*time.Second, cfg.ClientConfig.Timeout)
		assert.EqualValues(t, 16<<20, cfg.MaxBodySize)
		assert.Equal(t, 50000, cfg.SampleLimit)
	})
	t.Run("custom", func(t *testing.T) {
		cfg, err := load(t, "custom")
		require.NoError(t, err)
		assert.Equal(t, "https://vllm.inference.svc:8443", cfg.Endpoint)
		assert.Equal(t, 5*time.Second, cfg.CollectionInterval)
		assert.Equal(t, 2*time.Second, cfg.ClientConfig.Timeout)
		assert.Equal(t, "/custom/metrics", cfg.MetricsPath)
		assert.EqualValues(t, 1<<20, cfg.MaxBodySize)
		assert.Equal(t, 200000, cfg.SampleLimit)
		assert.True(t, cfg.TLS.InsecureSkipVerify)
		header, ok := cfg.Headers.Get("X-Scope")
		assert.True(t, ok)
		assert.Equal(t, configopaque.String("servescope"), header)
		assert.Equal(t, map[string]string{"service.instance.id": "llama-70b-replica-3", "k8s.pod.name": "vllm-0"}, cfg.ResourceAttributes)
	})
	t.Run("no scheme", func(t *testing.T) {
		_, err := load(t, "no_scheme")
		assert.ErrorContains(t, err, `endpoint "localhost:8000": scheme must be http or https`)
	})
	t.Run("bad path", func(t *testing.T) {
		_, err := load(t, "bad_path")
		assert.ErrorContains(t, err, `metrics_path "metrics": must start with /`)
	})
	t.Run("sample_limit 0 is no limit", func(t *testing.T) {
		cfg, err := load(t, "no_sample_limit")
		require.NoError(t, err)
		assert.Zero(t, cfg.SampleLimit)
	})
	t.Run("negative sample_limit", func(t *testing.T) {
		_, err := load(t, "negative_sample_limit")
		assert.ErrorContains(t, err, "sample_limit: must be 0 (no limit) or positive, got -5")
	})
	t.Run("credentials in the endpoint and an auth extension", func(t *testing.T) {
		_, err := load(t, "credentials_and_auth")
		require.Error(t, err)
		assert.ErrorContains(t, err, `endpoint "http://scraper:xxxxx@vllm.inference.svc:8000": credentials in the URL and an `+"`auth`")
		assert.NotContains(t, err.Error(), "s3cr3t")
	})
}

func TestParseVersion(t *testing.T) {
	v, err := enginescrape.ParseVersionField([]byte(`{"version": "0.11.2", "extra": {"ignored": true}}`))
	require.NoError(t, err)
	assert.Equal(t, "0.11.2", v)
	for body, want := range map[string]string{
		`{}`:                `no "version" field`,
		`{"version": 11}`:   "field .version of type string",
		`<html>oops</html>`: "version response",
		`{"version": ""}`:   `no "version" field`,
	} {
		_, err := enginescrape.ParseVersionField([]byte(body))
		assert.ErrorContains(t, err, want, body)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, seed := range []string{`{"version":"0.11.2"}`, `{"version":11}`, `{}`, `<html></html>`, `{"version":"` + "\xff" + `"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := enginescrape.ParseVersionField(body)
		if err == nil && v == "" {
			t.Fatal("no error and no version")
		}
	})
}
