package accuracy

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// report is the markdown docs/accuracy.md carries: the figures per case and seed, the counts behind them,
// and whether the no-SLO targets are met. results come in pairs, tuning seed then held-out.
func report(results []result) string {
	byCase := map[string]map[uint64]result{}
	var order []string
	for _, r := range results {
		if byCase[r.c.name] == nil {
			byCase[r.c.name] = map[uint64]result{}
			order = append(order, r.c.name)
		}
		byCase[r.c.name][r.seed] = r
	}
	pct := func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }
	pct1 := func(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

	var b strings.Builder
	fmt.Fprintf(&b, "Share of the simulator's slow requests whose cause matches (cause), of its slow requests judged slow "+
		"(recall), of its fast requests judged slow (false-slow). Tuning seed %d, held-out seed %d.\n\n", tuningSeed, heldOutSeed)
	b.WriteString("| case | SLO cause | no-SLO cause | beyond long answers | no-SLO recall | no-SLO false-slow | held-out: SLO cause | no-SLO cause | beyond long answers | no-SLO recall | no-SLO false-slow | floors (SLO / no-SLO) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, name := range order {
		fmt.Fprintf(&b, "| `%s` |", name)
		for _, seed := range []uint64{tuningSeed, heldOutSeed} {
			r, ok := byCase[name][seed]
			if !ok {
				b.WriteString(" - | - | - | - | - |")
				continue
			}
			slo, none := r.modes[withSLO], r.modes[withoutSLO]
			fmt.Fprintf(&b, " %s | %s | %s | %s | %s |", pct(slo.causeMatch()), pct(none.causeMatch()), pct(none.causeMatchBeyondLongAnswers()),
				pct(none.recall()), pct1(none.falseSlowShare()))
		}
		fmt.Fprintf(&b, " %s / %s |\n", pct(floorsSLO[name]), pct(floorsNoSLO[name]))
	}
	var skipped []string
	for _, c := range longCases {
		if byCase[c.name] == nil {
			skipped = append(skipped, "`"+c.name+"`")
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, "\nNot measured in this run (it had -short or -race): %s, and with them the healthy-hour target.\n", strings.Join(skipped, ", "))
	}

	b.WriteString("\nThe counts behind them, and the most common mismatches (truth → ours):\n\n")
	b.WriteString("| case | seed | requests | slow | SLO: cause matches | SLO mismatches | no-SLO: judged slow (of slow + of fast) | no-SLO: cause matches | no-SLO mismatches |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		slo, none := r.modes[withSLO], r.modes[withoutSLO]
		fmt.Fprintf(&b, "| `%s` | %d | %d | %d | %d | %s | %d + %d | %d | %s |\n", r.c.name, r.seed, slo.requests, slo.slow,
			slo.match, mismatches(slo.confusion, 3), none.caught, none.falseSlow, none.match, mismatches(none.confusion, 3))
	}

	b.WriteString("\nWhile the fault was on: the simulator's slow requests, beyond long answers, that arrived between the fault's " +
		"start and end, and the share whose cause matches. What the other figures add to these is the rest of the run: " +
		"for the one-minute scenarios, a cold start (no baseline yet, empty prefix caches) and the drain.\n\n")
	b.WriteString("| case | seed | slow while on | SLO cause | no-SLO cause |\n|---|---|---|---|---|\n")
	for _, r := range results {
		if !r.hasCause {
			continue
		}
		slo, none := r.modes[withSLO], r.modes[withoutSLO]
		fmt.Fprintf(&b, "| `%s` | %d | %d | %s | %s |\n", r.c.name, r.seed, none.duringFault,
			pct(share(slo.duringFaultMatch, slo.duringFault)), pct(share(none.duringFaultMatch, none.duringFault)))
	}

	for _, r := range results {
		if r.modes[withSLO].periods != nil {
			b.WriteString(periodTable(r))
		}
	}

	checks := checkTargets(results)
	met := 0
	for _, c := range checks {
		if c.met {
			met++
		}
	}
	fmt.Fprintf(&b, "\nIssue 16's targets without SLOs, not yet floors: %d of %d met.\n\n", met, len(checks))
	b.WriteString("| target | case | seed | measured | met |\n|---|---|---|---|---|\n")
	for _, c := range checks {
		verdict := "yes"
		if !c.met {
			verdict = "**no**"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %d | %s | %s |\n", c.target, c.name, c.seed, c.measured, verdict)
	}
	return b.String()
}

// periodTable shows a long case by when its requests arrived: whether a fault that outlasts the
// connector's windows is still recognised at its end, and whether a healthy fleet's slow share drifts.
func periodTable(r result) string {
	var b strings.Builder
	slo, none := r.modes[withSLO], r.modes[withoutSLO]
	fmt.Fprintf(&b, "\n`%s`, seed %d, by arrival time (%.0f-minute periods", r.c.name, r.seed, period.Minutes())
	if r.c.faultFrom > 0 {
		fmt.Fprintf(&b, "; the fault starts at %s", r.c.faultFrom)
	}
	b.WriteString("):\n\n| minutes |")
	for i := range slo.periods {
		fmt.Fprintf(&b, " %d-%d |", i*int(period.Minutes()), (i+1)*int(period.Minutes()))
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(slo.periods)) + "\n")
	rows := []struct {
		label string
		cell  func(i int) string
	}{
		{"simulator slow", func(i int) string { return fmt.Sprintf("%d", slo.periods[i].slow) }},
		{"SLO cause", func(i int) string { return fmt.Sprintf("%.0f%%", 100*share(slo.periods[i].match, slo.periods[i].slow)) }},
		{"no-SLO cause", func(i int) string {
			return fmt.Sprintf("%.0f%%", 100*share(none.periods[i].match, none.periods[i].slow))
		}},
		{"no-SLO judged slow", func(i int) string {
			return fmt.Sprintf("%.1f%%", 100*share(none.periods[i].judgedSlow, none.periods[i].requests))
		}},
	}
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |", row.label)
		for i := range slo.periods {
			if slo.periods[i].requests == 0 {
				b.WriteString(" - |")
				continue
			}
			fmt.Fprintf(&b, " %s |", row.cell(i))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// targetCheck is one of the no-SLO targets applied to one case and seed.
type targetCheck struct {
	target   string
	name     string
	seed     uint64
	measured string
	met      bool
}

// checkTargets applies the targets to the no-SLO figures: a cause match of at least 85% where the
// scenario has a cause, no case more than 5 points under its SLO figure, and at most 1% of a healthy
// hour's requests judged slow.
func checkTargets(results []result) []targetCheck {
	var out []targetCheck
	for _, r := range results {
		slo, none := r.modes[withSLO], r.modes[withoutSLO]
		// Without an SLO a long answer at the usual pace is not slow (by decision): the no-SLO figure the
		// targets read leaves those requests out; the SLO figure counts everything.
		noSLO := none.causeMatchBeyondLongAnswers()
		if r.hasCause {
			out = append(out, targetCheck{
				target: fmt.Sprintf("cause match ≥ %.0f%%", 100*targetCauseMatch), name: r.c.name, seed: r.seed,
				measured: fmt.Sprintf("%.0f%%", 100*noSLO), met: noSLO >= targetCauseMatch,
			})
		}
		gap := slo.causeMatch() - noSLO
		side := "level"
		switch points := math.Round(100 * gap); {
		case points > 0:
			side = plural(points, "point") + " under"
		case points < 0:
			side = plural(-points, "point") + " over"
		}
		out = append(out, targetCheck{
			target: fmt.Sprintf("≤ %.0f points under SLO", 100*targetBelowSLO), name: r.c.name, seed: r.seed,
			measured: fmt.Sprintf("%.0f%% vs %.0f%%: %s", 100*noSLO, 100*slo.causeMatch(), side),
			met:      gap <= targetBelowSLO+1e-9,
		})
		if r.c.name == healthyCase {
			out = append(out, targetCheck{
				target: fmt.Sprintf("judged slow ≤ %.0f%%", 100*targetHealthy), name: r.c.name, seed: r.seed,
				measured: fmt.Sprintf("%.1f%% (%d of %d)", 100*none.judgedSlowShare(), none.caught+none.falseSlow, none.requests),
				met:      none.judgedSlowShare() <= targetHealthy,
			})
		}
	}
	return out
}

func plural(n float64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%.0f %ss", n, unit)
}

type confusionEntry struct {
	truth, ours string
	n           int
}

// ranked lists the confusion matrix's cells, largest first (ties by name, so reports repeat exactly).
func ranked(confusion map[[2]string]int) []confusionEntry {
	var all []confusionEntry
	for k, n := range confusion {
		all = append(all, confusionEntry{k[0], k[1], n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].truth+all[i].ours < all[j].truth+all[j].ours
	})
	return all
}

// top is the largest cells, matches included, for a failure message.
func top(confusion map[[2]string]int) string {
	var b strings.Builder
	for i, e := range ranked(confusion) {
		if i == 8 {
			break
		}
		fmt.Fprintf(&b, "%s -> %s: %d; ", e.truth, e.ours, e.n)
	}
	return b.String()
}

// mismatches is the n largest cells where we named another cause.
func mismatches(confusion map[[2]string]int, n int) string {
	var miss []string
	for _, e := range ranked(confusion) {
		if e.truth != e.ours {
			miss = append(miss, fmt.Sprintf("%s → %s: %d", e.truth, e.ours, e.n))
		}
		if len(miss) == n {
			break
		}
	}
	return strings.Join(miss, "; ")
}
