package llmsignalsconnector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigRejectsBadAutoscaling(t *testing.T) {
	require.NoError(t, createDefaultConfig().Validate())
	for name, mutate := range map[string]func(*AutoscalingConfig){
		"utilization zero":      func(a *AutoscalingConfig) { a.TargetUtilization = 0 },
		"utilization above one": func(a *AutoscalingConfig) { a.TargetUtilization = 1.2 },
		"no drain time":         func(a *AutoscalingConfig) { a.DrainTime = 0 },
		"no demand half-life":   func(a *AutoscalingConfig) { a.DemandHalfLife = -time.Second },
		"no capacity half-life": func(a *AutoscalingConfig) { a.CapacityHalfLife = 0 },
	} {
		cfg := createDefaultConfig()
		mutate(&cfg.Autoscaling)
		err := cfg.Validate()
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), "target_utilization must be in (0, 1]", name)
		}
	}
}
