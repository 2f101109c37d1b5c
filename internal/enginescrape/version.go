package enginescrape

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ParseVersionField reads `{"version": "..."}`, the shape of vLLM's and trtllm-serve's /version.
func ParseVersionField(body []byte) (string, error) {
	var v struct {
		Version *string `json:"version"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("version response: %w", err)
	}
	if v.Version == nil || *v.Version == "" {
		return "", errors.New(`version response: no "version" field`)
	}
	return *v.Version, nil
}
