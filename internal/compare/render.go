package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/servescope/servescope/internal/spanfile"
)

// Period describes one side of a comparison for the report's header.
type Period struct {
	Path     string    `json:"file"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Requests int       `json:"requests"`
	Foreign  int       `json:"spans_without_explanation"`
	Problems []string  `json:"problems,omitempty"`
}

// PeriodOf describes a loaded window: its bounds are the window's, or the first and last arrival in it.
func PeriodOf(w *spanfile.Window) Period {
	p := Period{Path: w.Source.Path, From: w.From, To: w.To, Requests: len(w.Requests), Foreign: w.File.Foreign, Problems: w.File.Problems}
	if p.From.IsZero() {
		p.From = w.Requests[0].Start
	}
	if p.To.IsZero() {
		p.To = w.Requests[len(w.Requests)-1].Start
	}
	p.From, p.To = p.From.UTC(), p.To.UTC()
	return p
}

// Report is a whole comparison of two periods.
type Report struct {
	Before  Period    `json:"before"`
	After   Period    `json:"after"`
	By      Dimension `json:"by"`
	Groups  []Pair    `json:"groups"`
	Changes []Change  `json:"changes"`
	// Unranked counts the groups present in both periods with too few requests in one to compare p95s.
	Unranked int `json:"unranked_groups"`
	// Names label the two sides in the text ("before" and "after" when empty; a replay says "recorded" and
	// "predicted").
	Names [2]string `json:"-"`
}

func (r Report) names() (string, string) {
	if r.Names[0] == "" {
		return "before", "after"
	}
	return r.Names[0], r.Names[1]
}

// Pair is one group in both periods (either side nil where the group is in one period only).
type Pair struct {
	Model     string    `json:"model"`
	Dimension Dimension `json:"dimension,omitempty"`
	Key       string    `json:"key,omitempty"`
	Before    *Summary  `json:"before"`
	After     *Summary  `json:"after"`
}

// Periods compares two windows grouped by the dimension.
func Periods(before, after *spanfile.Window, by Dimension) Report {
	sb, sa := Summarize(before.Requests, by), Summarize(after.Requests, by)
	r := Report{Before: PeriodOf(before), After: PeriodOf(after), By: by, Changes: Changes(sb, sa)}
	type groupKey struct{ model, key string }
	pairs := map[groupKey]*Pair{}
	var order []groupKey
	add := func(s Summary, after bool) {
		k := groupKey{s.Model, s.Key}
		p, ok := pairs[k]
		if !ok {
			p = &Pair{Model: s.Model, Dimension: s.Dimension, Key: s.Key}
			pairs[k] = p
			order = append(order, k)
		}
		if after {
			p.After = &s
		} else {
			p.Before = &s
		}
	}
	for _, s := range sb {
		add(s, false)
	}
	for _, s := range sa {
		add(s, true)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].model != order[j].model {
			return order[i].model < order[j].model
		}
		return order[i].key < order[j].key
	})
	for _, k := range order {
		p := *pairs[k]
		if p.Before != nil && p.After != nil && (p.Before.Requests < MinRanked || p.After.Requests < MinRanked) {
			r.Unranked++
		}
		r.Groups = append(r.Groups, p)
	}
	return r
}

// JSON writes any report as indented JSON.
func JSON(w io.Writer, report any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}

// Text writes a comparison of two periods for a person: what each side is, a table per group, then the
// changes, largest first.
func (r Report) Text(w io.Writer) error {
	first, second := r.names()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, side := range []struct {
		name string
		p    Period
	}{{first, r.Before}, {second, r.After}} {
		fmt.Fprintf(tw, "%s:\t%s\t%d requests\t%s .. %s\n", side.name, side.p.Path, side.p.Requests,
			side.p.From.Format(time.RFC3339), side.p.To.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, side := range []Period{r.Before, r.After} {
		if side.Foreign > 0 {
			fmt.Fprintf(w, "note: %s: %d spans without an explanation were left out\n", side.Path, side.Foreign)
		}
		for _, p := range side.Problems {
			fmt.Fprintf(w, "note: %s: %s\n", side.Path, p)
		}
	}
	for _, g := range r.Groups {
		fmt.Fprintln(w)
		title := g.Model
		if g.Dimension != "" {
			title = fmt.Sprintf("%s, %s %s", g.Model, g.Dimension, g.Key)
		}
		fmt.Fprintf(w, "%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\t%s\t%s\t\n", first, second)
		fmt.Fprintf(tw, "requests\t%s\t%s\t\n", side(g.Before, func(s *Summary) string { return fmt.Sprint(s.Requests) }),
			side(g.After, func(s *Summary) string { return fmt.Sprint(s.Requests) }))
		fmt.Fprintf(tw, "slow\t%s\t%s\t\n", side(g.Before, slowText), side(g.After, slowText))
		fmt.Fprintf(tw, "cached prompt share\t%s\t%s\t\n", side(g.Before, cachedText), side(g.After, cachedText))
		for _, m := range Metrics {
			q := func(s *Summary) string {
				l := s.Latency[m]
				return fmt.Sprintf("%s / %s / %s", Seconds(float64(l.P50)), Seconds(float64(l.P95)), Seconds(float64(l.P99)))
			}
			fmt.Fprintf(tw, "%s p50/p95/p99\t%s\t%s\t\n", metricLabel(m), side(g.Before, q), side(g.After, q))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if mix := causeMix(g); mix != "" {
			fmt.Fprintf(w, "  causes of slow requests: %s\n", mix)
		}
	}
	fmt.Fprintln(w)
	if len(r.Changes) == 0 {
		fmt.Fprintf(w, "No p95 moved by more than %.0f%% and %s (%s for TPOT).\n", minChangeFraction*100, Seconds(minChangeSeconds), Seconds(minChangeSecondsTPOT))
	} else {
		fmt.Fprintln(w, "Biggest changes:")
		for i, c := range r.Changes {
			fmt.Fprintf(w, "%3d. %s\n", i+1, c.Sentence)
		}
	}
	if r.Unranked > 0 {
		fmt.Fprintf(w, "(%d groups with fewer than %d requests in a period are shown but not ranked: their p95 is one or two requests.)\n", r.Unranked, MinRanked)
	}
	return nil
}

func side(s *Summary, f func(*Summary) string) string {
	if s == nil {
		return "-"
	}
	return f(s)
}

func slowText(s *Summary) string {
	return fmt.Sprintf("%d (%s)", s.Slow, Percent(float64(s.SlowShare)))
}

func cachedText(s *Summary) string { return Percent(float64(s.CachedShare)) }

// causeMix lists each cause's share of the slow requests, before -> after, biggest after first.
func causeMix(g Pair) string {
	causes := map[string]bool{}
	for _, s := range []*Summary{g.Before, g.After} {
		if s != nil {
			for c := range s.Causes {
				causes[c] = true
			}
		}
	}
	names := make([]string, 0, len(causes))
	for c := range causes {
		names = append(names, c)
	}
	share := func(s *Summary, c string) float64 {
		if s == nil {
			return 0
		}
		return s.CauseShare(c)
	}
	sort.Slice(names, func(i, j int) bool {
		ai, aj := share(g.After, names[i]), share(g.After, names[j])
		if ai != aj {
			return ai > aj
		}
		bi, bj := share(g.Before, names[i]), share(g.Before, names[j])
		if bi != bj {
			return bi > bj
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for _, c := range names {
		parts = append(parts, fmt.Sprintf("%s %s -> %s", c, Percent(share(g.Before, c)), Percent(share(g.After, c))))
	}
	return strings.Join(parts, ", ")
}

// Text writes one request's comparison for a person.
func (rep RequestReport) Text(w io.Writer) error {
	fmt.Fprintf(w, "request %s  model %s  tenant %s", rep.ID, rep.Model, rep.Tenant)
	if rep.Family != "" {
		fmt.Fprintf(w, "  family %s", rep.Family)
	}
	if rep.Replica != "" {
		fmt.Fprintf(w, "  replica %s", rep.Replica)
	}
	fmt.Fprintf(w, "\n%s prompt tokens, %s output tokens\n", count(rep.PromptTokens), count(rep.GenerationTokens))
	fmt.Fprintf(w, "compared with %d requests like it (%s)", rep.Peers, rep.Likeness)
	if len(rep.Widened) > 0 {
		fmt.Fprintf(w, "; too few alike, so widened to %s", strings.Join(rep.Widened, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tthis\tpeers p50\tpeers p95\tover p50\t\n")
	for _, d := range rep.Phases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", metricLabel(d.Phase), Seconds(float64(d.Value)), Seconds(float64(d.PeerP50)),
			Seconds(float64(d.PeerP95)), signed(d.Excess))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, rep.Sentence)
	return err
}

func count(f Float) string {
	if !f.Known() {
		return "?"
	}
	return fmt.Sprintf("%.0f", float64(f))
}

func signed(f Float) string {
	if !f.Known() {
		return "-"
	}
	if f > 0 {
		return "+" + Seconds(float64(f))
	}
	return Seconds(float64(f))
}
