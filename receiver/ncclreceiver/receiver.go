package ncclreceiver

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servescope/servescope/receiver/ncclreceiver/internal/metadata"
)

type ncclReceiver struct {
	cfg    *Config
	set    receiver.Settings
	next   consumer.Metrics
	logger *zap.Logger
	files  *FileReader
	loc    gpuLocator
	client storage.Client

	mu      sync.Mutex // one interval at a time: the ticker and shutdown's final pass
	cancel  context.CancelFunc
	done    chan struct{}
	behind  bool // the read budget ran out before the files' ends
	failing bool // the last checkpoint write failed
	// undelivered: the last metrics did not reach the pipeline, so the offsets past them must not be
	// checkpointed (a restart then re-reads those records instead of losing them).
	undelivered bool

	telemetry struct {
		records, rejected, dropped metric.Int64Counter
		attrs                      metric.MeasurementOption
	}
}

func newReceiver(cfg *Config, set receiver.Settings, next consumer.Metrics, loc gpuLocator) (*ncclReceiver, error) {
	host, _ := os.Hostname()
	r := &ncclReceiver{cfg: cfg, set: set, next: next, logger: set.Logger, loc: loc}
	r.files = newFileReader(cfg, set.Logger, loc, host, time.Now())
	telemetry, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	r.telemetry.records, r.telemetry.rejected, r.telemetry.dropped =
		telemetry.NcclRecords, telemetry.NcclRejectedLines, telemetry.NcclDroppedRecords
	r.telemetry.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("receiver", set.ID.String())))
	return r, nil
}

// Start loads the checkpoint and starts reading on the collection interval.
func (r *ncclReceiver) Start(ctx context.Context, host component.Host) error {
	if r.cfg.Storage != nil {
		client, err := getStorageClient(ctx, host, *r.cfg.Storage, r.set.ID)
		if err != nil {
			return err
		}
		r.client = client
		b, err := client.Get(ctx, checkpointKey)
		if err != nil {
			return fmt.Errorf("storage: reading the checkpoint: %w", err)
		}
		if err := r.files.tail.load(b); err != nil {
			// A checkpoint we cannot read must not stop the collector; starting over may count some
			// records twice, which the warning says.
			r.logger.Warn("NCCL offsets checkpoint is unreadable; reading files as if for the first time", zap.Error(err))
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.run(runCtx)
	return nil
}

func (r *ncclReceiver) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.CollectionInterval)
	defer t.Stop()
	r.collect(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.collect(ctx)
		}
	}
}

// collect runs one interval: read within the budget, emit, and checkpoint once the metrics are delivered.
// Counts are cumulative, so metrics that fail to deliver are carried by the next delivery; the checkpoint
// waits for a delivery, so that a crash in between re-reads those records rather than losing them.
func (r *ncclReceiver) collect(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, caughtUp := r.files.Read(time.Now())
	switch {
	case !caughtUp && !r.behind:
		r.behind = true
		r.logger.Warn("NCCL Inspector files grow faster than max_bytes_per_interval / max_records_per_interval allow; reading behind",
			zap.Int64("max_bytes_per_interval", r.cfg.MaxBytesPerInterval), zap.Int("max_records_per_interval", r.cfg.MaxRecordsPerInterval))
	case caughtUp && r.behind:
		r.behind = false
		r.logger.Info("NCCL Inspector files read up to date again")
	}
	r.flushTelemetry(ctx)
	if md.DataPointCount() > 0 {
		if err := r.next.ConsumeMetrics(ctx, md); err != nil {
			r.undelivered = true
			r.logger.Debug("NCCL metrics not delivered; the next interval carries them", zap.Error(err))
			return
		}
	}
	r.undelivered = false
	r.checkpoint(ctx)
}

func (r *ncclReceiver) checkpoint(ctx context.Context) {
	if r.client == nil {
		return
	}
	if err := r.client.Set(ctx, checkpointKey, r.files.tail.snapshot()); err != nil {
		if !r.failing {
			r.failing = true
			r.logger.Warn("Cannot write the NCCL offsets checkpoint; a restart now would re-read records", zap.Error(err))
		}
		return
	}
	r.failing = false
}

func (r *ncclReceiver) flushTelemetry(ctx context.Context) {
	a := r.files.agg
	if a.records > 0 {
		r.telemetry.records.Add(ctx, a.records, r.telemetry.attrs)
	}
	if a.rejects > 0 {
		r.telemetry.rejected.Add(ctx, a.rejects, r.telemetry.attrs)
	}
	if a.dropped > 0 {
		r.telemetry.dropped.Add(ctx, a.dropped, r.telemetry.attrs)
	}
	a.records, a.rejects, a.dropped = 0, 0, 0
}

// Shutdown stops reading, writes the last checkpoint and releases NVML and the storage client.
func (r *ncclReceiver) Shutdown(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	var err error
	if r.client != nil {
		r.mu.Lock()
		if !r.undelivered {
			r.checkpoint(ctx)
		}
		r.mu.Unlock()
		err = r.client.Close(ctx)
		r.client = nil
	}
	if r.loc != nil {
		r.loc.close()
	}
	return err
}
