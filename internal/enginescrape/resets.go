package enginescrape

import (
	"time"

	"go.uber.org/zap"

	"github.com/servescope/servescope/internal/logonce"
)

// A counter reset is worth a line: it is how an engine restart shows in the data. But a counter that flaps
// (two engines behind one load-balanced Service, each scrape reaching either) resets every other scrape,
// and a line each time buries the log. So each family's first reset is said, later ones at most once per
// resetLogInterval with how many went unsaid, and every reset is counted in otelcol_engine_counter_resets.
const (
	resetLogInterval = time.Hour
	// flapResets resets of one family within resetLogInterval of its last line are no single restart; the
	// receiver says so once in its life.
	flapResets = 3
	// maxResetFamilies bounds the families remembered; forgetting them only means a reset is said again.
	maxResetFamilies = 10000
)

type resetLog struct {
	families   *logonce.Throttle
	flapWarned bool
}

func newResetLog() resetLog {
	return resetLog{families: logonce.NewThrottle(resetLogInterval, maxResetFamilies)}
}

// note is called after every converted scrape with the families whose series started over.
func (l *resetLog) note(logger *zap.Logger, families []string, now time.Time) {
	if len(families) == 0 {
		return
	}
	var due, flapping []string
	unsaidTotal := 0
	for _, family := range families {
		say, unsaid := l.families.Note(family, now)
		if say {
			due = append(due, family)
			unsaidTotal += unsaid
			continue
		}
		if unsaid+1 >= flapResets {
			flapping = append(flapping, family)
		}
	}
	if len(due) > 0 {
		fields := []zap.Field{zap.Strings("families", capList(due))}
		if unsaidTotal > 0 {
			fields = append(fields, zap.Int("resets_not_logged_since_last_line", unsaidTotal))
		}
		logger.Info("Counters went back to zero or down (engine restart?); started new cumulative series. Further resets "+
			"of these families are logged at most once an hour and counted in otelcol_engine_counter_resets", fields...)
	}
	if len(flapping) > 0 && !l.flapWarned {
		l.flapWarned = true
		logger.Warn("Counters keep going back to zero or down: several engines behind this one endpoint (a load-balanced "+
			"Service?) or an engine restarting over and over. Point each receiver at one replica (a pod, not a Service); "+
			"said once, resets go on being counted in otelcol_engine_counter_resets",
			zap.Strings("families", capList(flapping)), zap.Int("resets_within_an_hour", flapResets))
	}
}

func capList(families []string) []string {
	if len(families) > maxListedFamilies {
		return families[:maxListedFamilies]
	}
	return families
}
