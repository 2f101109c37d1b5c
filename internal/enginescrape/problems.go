package enginescrape

import "go.uber.org/zap"

// problemLog logs each kind of scrape problem once when it starts and once when it clears, instead of on
// every scrape: an engine that is down for an hour at a 10 s interval must not write 360 identical lines.
type problemLog struct {
	logger *zap.Logger
	active map[string]bool
	seen   map[string]bool // problems reported during the current scrape
}

func newProblemLog(logger *zap.Logger) *problemLog {
	return &problemLog{logger: logger, active: map[string]bool{}, seen: map[string]bool{}}
}

// report logs msg at warning level unless the same problem (key) was already reported and has not cleared.
func (p *problemLog) report(key, msg string, fields ...zap.Field) {
	p.seen[key] = true
	if p.active[key] {
		return
	}
	p.active[key] = true
	p.logger.Warn(msg, fields...)
}

// endScrape clears the problems that did not recur in this scrape, saying so for the ones worth knowing.
func (p *problemLog) endScrape() {
	for key := range p.active {
		if !p.seen[key] {
			delete(p.active, key)
			if key == problemUnreachable || key == problemHTTPStatus || key == problemNoSeries || key == problemSampleLimit {
				p.logger.Info("Engine endpoint is healthy again", zap.String("problem", key))
			}
		}
	}
	clear(p.seen)
}

const (
	problemUnreachable = "unreachable"
	problemHTTPStatus  = "http_status"
	problemNoSeries    = "no_series"
	problemBadLines    = "invalid_lines"
	problemTooLarge    = "body_too_large"
	problemVersion     = "version"
	problemSampleLimit = "sample_limit"
	// problemRepeatedSeries is one problem for the whole page: a page that repeats series usually repeats many.
	problemRepeatedSeries = "repeated_series"
)
