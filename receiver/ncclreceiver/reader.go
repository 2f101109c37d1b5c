package ncclreceiver

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"
)

// FileReader is the receiver's reading of Inspector files without its ticker: each Read takes in what the
// files gained since the previous one and returns the metrics as of the moment it is given. The receiver
// reads on the wall clock; a simulation or a replay that runs faster than real time reads on its own clock,
// so that the metrics' timestamps and the staleness of replicas follow that clock and not the machine's.
// It looks up no GPUs (records carry none) and checkpoints nothing.
type FileReader struct {
	cfg  *Config
	tail *tailer
	agg  *aggregator
}

// NewFileReader validates cfg and returns a reader of the files it names, whose cumulative series start at start.
func NewFileReader(cfg *Config, logger *zap.Logger, start time.Time) (*FileReader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &FileReader{cfg: cfg, tail: newTailer(cfg, logger), agg: newAggregator(cfg, logger, nil, "", start)}, nil
}

// Read reads one interval at now; caughtUp is false when the interval's budget ran out before the files' ends.
func (r *FileReader) Read(now time.Time) (md pmetric.Metrics, caughtUp bool) {
	return readInterval(r.cfg, r.tail, r.agg, now)
}

// readInterval reads what the files gained, within one interval's budget, and builds the interval's metrics.
func readInterval(cfg *Config, tail *tailer, agg *aggregator, now time.Time) (pmetric.Metrics, bool) {
	agg.begin(now)
	b := budget{bytes: cfg.MaxBytesPerInterval, records: cfg.MaxRecordsPerInterval}
	caughtUp := tail.poll(&b, agg)
	return agg.emit(), caughtUp
}
