package replay

import (
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/servescope/servescope/internal/compare"
)

// Report summarizes an outcome against what the requests met when recorded.
type Report struct {
	Target          string                       `json:"target"`
	Workload        int                          `json:"workload_requests"`
	Sent            int                          `json:"sent"`
	Answered        int                          `json:"answered"`
	Failed          int                          `json:"failed"`
	NotSentBounds   int                          `json:"not_sent_bounds"`
	NotSentInFlight int                          `json:"not_sent_in_flight"`
	ElapsedSeconds  compare.Float                `json:"elapsed_seconds"`
	MaxLateSeconds  compare.Float                `json:"max_late_seconds"`
	Recorded        map[string]compare.Quantiles `json:"recorded"`
	Observed        map[string]compare.Quantiles `json:"observed"`
	OutputRecorded  int                          `json:"output_tokens_recorded"`
	OutputObserved  int                          `json:"output_tokens_observed"`
	// Errors counts failures by their message (HTTP status and the start of the body, or the transport error).
	Errors map[string]int `json:"errors,omitempty"`
}

// NewReport compares what the sent requests met with what they met when recorded (TTFT, TPOT, e2e).
func NewReport(target string, workload int, out Outcome) Report {
	rep := Report{
		Target: target, Workload: workload, Sent: len(out.Results),
		NotSentBounds: out.NotSentBounds, NotSentInFlight: out.NotSentInFlight,
		ElapsedSeconds: compare.Float(out.Elapsed.Seconds()), Errors: map[string]int{},
	}
	var late time.Duration
	recorded, observed := map[string][]float64{}, map[string][]float64{}
	add := func(into map[string][]float64, l Latency) {
		for name, v := range map[string]float64{"ttft": l.TTFT, "tpot": l.TPOT, "e2e": l.E2E} {
			if !math.IsNaN(v) {
				into[name] = append(into[name], v)
			}
		}
	}
	for _, r := range out.Results {
		late = max(late, r.Late)
		if r.Err != "" {
			rep.Failed++
			rep.Errors[r.Err]++
			continue
		}
		rep.Answered++
		rep.OutputRecorded += r.Request.OutputTokens
		rep.OutputObserved += r.OutputTokens
		add(recorded, r.Request.Recorded)
		add(observed, r.Observed)
	}
	rep.MaxLateSeconds = compare.Float(late.Seconds())
	rep.Recorded, rep.Observed = quantiles(recorded), quantiles(observed)
	return rep
}

func quantiles(values map[string][]float64) map[string]compare.Quantiles {
	out := map[string]compare.Quantiles{}
	for _, name := range []string{"ttft", "tpot", "e2e"} {
		sort.Float64s(values[name])
		out[name] = compare.QuantilesOf(values[name])
	}
	return out
}

// Text writes the report for a person.
func (rep Report) Text(w io.Writer) error {
	fmt.Fprintf(w, "sent %d of %d requests to %s over %s", rep.Sent, rep.Workload, rep.Target, compare.Seconds(float64(rep.ElapsedSeconds)))
	if rep.NotSentBounds > 0 || rep.NotSentInFlight > 0 {
		fmt.Fprintf(w, " (%d left out by --max-requests/--max-duration, %d due while --max-in-flight were open)", rep.NotSentBounds, rep.NotSentInFlight)
	}
	fmt.Fprintf(w, "; %d answered, %d failed; the latest send was %s behind its time\n", rep.Answered, rep.Failed, compare.Seconds(float64(rep.MaxLateSeconds)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\trecorded p50 / p95\tobserved p50 / p95\t\n")
	for _, name := range []string{"ttft", "tpot", "e2e"} {
		r, o := rep.Recorded[name], rep.Observed[name]
		fmt.Fprintf(tw, "%s\t%s / %s\t%s / %s\t\n", name, compare.Seconds(float64(r.P50)), compare.Seconds(float64(r.P95)),
			compare.Seconds(float64(o.P50)), compare.Seconds(float64(o.P95)))
	}
	fmt.Fprintf(tw, "output tokens\t%d\t%d\t\n", rep.OutputRecorded, rep.OutputObserved)
	if err := tw.Flush(); err != nil {
		return err
	}
	errs := make([]string, 0, len(rep.Errors))
	for e := range rep.Errors {
		errs = append(errs, e)
	}
	sort.Slice(errs, func(i, j int) bool {
		return rep.Errors[errs[i]] > rep.Errors[errs[j]] || (rep.Errors[errs[i]] == rep.Errors[errs[j]] && errs[i] < errs[j])
	})
	for _, e := range errs {
		fmt.Fprintf(w, "failed %d times: %s\n", rep.Errors[e], e)
	}
	return nil
}
