package llmnormalizeprocessor

import (
	"errors"
	"fmt"
	"strings"

	"github.com/servescope/servescope/internal/schema"
)

// Config of the llm_normalize processor.
type Config struct {
	// Engines limits mapping to these engines (names as in llm.engine.name); empty maps every engine the
	// canonical schema knows.
	Engines []string `mapstructure:"engines"`
	// KeepOriginals keeps each mapped vendor metric next to its canonical copy. Off by default: dashboards
	// should read canonical names, and sending both doubles the series a backend stores.
	KeepOriginals bool `mapstructure:"keep_originals"`
	// DropUnmapped drops vendor metrics that have no canonical home (python_*, http_*, ...). Off by default:
	// what we do not understand still reaches the backend unchanged.
	DropUnmapped bool `mapstructure:"drop_unmapped"`

	_ struct{}
}

// Validate rejects engine names the schema does not know, listing the ones it does.
func (c *Config) Validate() error {
	s, err := schema.Default()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range c.Engines {
		if s.Engines[e] == nil {
			errs = append(errs, fmt.Errorf("engines: unknown engine %q (known: %s)", e, strings.Join(s.EngineNames, ", ")))
		}
	}
	return errors.Join(errs...)
}
