// Package promtext parses the Prometheus text exposition format (0.0.4)
// one line at a time, so that a scrape of an LLM inference engine keeps its
// good series even when part of the body is bad.
//
// # Tolerance contract
//
// Prometheus' own parser gives up on the whole scrape at the first error. The
// engines this collector scrapes (vLLM, SGLang, llama.cpp, Triton, ...) do
// produce bad lines in practice: a body cut off by a timeout, a NaN printed
// by MSVC as "-nan(ind)", a proxy's HTML error page instead of metrics. Losing
// every series because of one such line would hide exactly the moments an
// operator cares about, so Parse works like this instead:
//
//   - Every line is judged on its own. A line that cannot be understood is
//     skipped, counted in Result.ErrorCount and, for the first
//     MaxReportedErrors such lines, described in Result.Errors. Nothing else
//     in the body is affected by it.
//   - Parse never panics and never returns a Go error: a body that is entirely
//     wrong (an HTML page) yields no families and ErrorCount equal to its
//     number of non-empty lines, which callers can use to tell "engine
//     reported nothing" from "we did not get metrics at all".
//   - A truncated body is an ordinary body whose last line may be invalid.
//     A cut that happens to leave a well-formed line (for example inside the
//     digits of a value) cannot be detected here.
//   - Work is linear in the size of the body and the memory kept is the parsed
//     result plus bounded scratch space. A line longer than 1 MiB is rejected
//     without being copied, and a sample may have at most 1000 labels, so a
//     hostile or broken endpoint cannot make a scrape expensive. ParseLimit
//     also bounds the samples kept: it stops at the first sample beyond its
//     limit and only counts the lines after it, for a caller that rejects such
//     a body whole (Prometheus' sample_limit) and would throw them away.
//   - The input is read the way engines actually write it rather than the
//     way the specification spells it: OpenMetrics type words (unknown, info,
//     stateset, gaugehistogram), every NaN spelling seen from C runtimes,
//     trailing commas in label sets, whitespace around tokens, CRLF line
//     endings, a missing final newline, a UTF-8 byte order mark, quoted UTF-8
//     metric names, and OpenMetrics exemplars (which are ignored) are all
//     accepted.
//
// Samples are grouped into families the way Prometheus clients emit them
// (HELP/TYPE first, then the samples, with _bucket/_count/_sum and similar
// suffixes), but an exact name match always wins, because Python's
// prometheus_client declares each "_created" series as a family of its own and
// the caller needs to see it as such.
package promtext
