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
// Made with NewFileReader it looks up no GPUs (records carry none); it never checkpoints (the receiver does).
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
	return newFileReader(cfg, logger, nil, "", start), nil
}

// newFileReader is the reader the receiver runs on its ticker too, with its GPU lookup and host name.
func newFileReader(cfg *Config, logger *zap.Logger, loc gpuLocator, hostname string, start time.Time) *FileReader {
	return &FileReader{cfg: cfg, tail: newTailer(cfg, logger), agg: newAggregator(cfg, logger, loc, hostname, start)}
}

// Read reads what the files gained, within one interval's budget, and builds the interval's metrics as of
// now; caughtUp is false when the budget ran out before the files' ends.
func (r *FileReader) Read(now time.Time) (md pmetric.Metrics, caughtUp bool) {
	r.agg.begin(now)
	b := budget{bytes: r.cfg.MaxBytesPerInterval, records: r.cfg.MaxRecordsPerInterval}
	caughtUp = r.tail.poll(&b, r.agg)
	return r.agg.emit(), caughtUp
}
