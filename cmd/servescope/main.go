// Command servescope works on what a servescope collector has written: the explained request spans its
// file exporter keeps.
//
//	servescope compare [--by tenant|replica|family] [--json] BEFORE AFTER
//	servescope compare --request ID [--alike tenant|family|replica] [--json] FILE
//	servescope replay FILE --target URL [--rate-scale X] [--max-requests N] [--max-duration D] [--json]
//	servescope replay FILE --export mooncake OUT
//
// BEFORE and AFTER are files, or windows of a file: FILE@FROM..TO with RFC 3339 times or offsets from the
// file's first request (spans.json@..30m spans.json@30m..).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/servescope/servescope/internal/compare"
	"github.com/servescope/servescope/internal/spanfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  servescope compare [--by tenant|replica|family] [--json] BEFORE AFTER
  servescope compare --request ID [--alike tenant|family|replica] [--json] FILE
  servescope replay FILE --target URL [--model NAME] [--rate-scale X] [--max-requests N] [--max-duration D] [--json]
  servescope replay FILE --export mooncake OUT.jsonl
  servescope replay --import mooncake TRACE.jsonl --model NAME --target URL [...]

BEFORE, AFTER and FILE are what the collector's file exporter wrote (OTLP JSON lines or protobuf, zstd or
gzip compressed too), or a window of one: FILE@FROM..TO, with RFC 3339 times or offsets from the file's
first request, either end open (spans.json@..30m, spans.json@+30m..).
`

// run is main without the process: exit status 0 on success, 1 when the input is wrong, 2 for usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "compare":
		return runCompare(args[1:], stdout, stderr)
	case "replay":
		return runReplay(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "servescope: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func runCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	by := fs.String("by", "model", "group each model's requests further by tenant, replica or family")
	asJSON := fs.Bool("json", false, "write JSON instead of text")
	requestID := fs.String("request", "", "compare this request (its gen_ai.request.id) with the requests like it")
	alike := fs.String("alike", "", "with --request: peers also share the request's tenant, family or replica")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "servescope compare: %v\n", err)
		return 1
	}
	dim, err := dimension(*by)
	if err != nil {
		fmt.Fprintf(stderr, "servescope compare: --by: %v\n", err)
		return 2
	}
	if *requestID != "" {
		if len(positional) != 1 {
			fmt.Fprintf(stderr, "servescope compare --request: want one FILE, got %d arguments\n", len(positional))
			return 2
		}
		alikeDim := compare.Dimension("")
		if *alike != "" {
			if alikeDim, err = dimension(*alike); err != nil || alikeDim == compare.ByModel {
				fmt.Fprintf(stderr, "servescope compare: --alike: want tenant, family or replica, got %q\n", *alike)
				return 2
			}
		}
		w, err := load(positional[0])
		if err != nil {
			return fail(err)
		}
		rep, err := compare.CompareRequest(w.Requests, *requestID, alikeDim)
		if errors.Is(err, compare.ErrNoSuchRequest) {
			return fail(fmt.Errorf("%s: no explained request has id %q (ids look like: %s)", w.Source.Path, *requestID,
				strings.Join(compare.SomeIDs(w.Requests, 3), ", ")))
		}
		if err != nil {
			return fail(err)
		}
		return write(stdout, stderr, rep, *asJSON)
	}
	if *alike != "" {
		fmt.Fprintln(stderr, "servescope compare: --alike goes with --request")
		return 2
	}
	if len(positional) != 2 {
		fmt.Fprintf(stderr, "servescope compare: want BEFORE and AFTER, got %d arguments\n%s", len(positional), usage)
		return 2
	}
	before, err := load(positional[0])
	if err != nil {
		return fail(err)
	}
	after, err := load(positional[1])
	if err != nil {
		return fail(err)
	}
	return write(stdout, stderr, compare.Periods(before, after, dim), *asJSON)
}

type textReport interface{ Text(io.Writer) error }

func write(stdout, stderr io.Writer, report textReport, asJSON bool) int {
	var err error
	if asJSON {
		err = compare.JSON(stdout, report)
	} else {
		err = report.Text(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "servescope: writing the report: %v\n", err)
		return 1
	}
	return 0
}

func load(arg string) (*spanfile.Window, error) {
	src, err := spanfile.ParseSource(arg)
	if err != nil {
		return nil, err
	}
	return spanfile.Load(src)
}

func dimension(s string) (compare.Dimension, error) {
	for _, d := range compare.Dimensions {
		if string(d) == s {
			return d, nil
		}
	}
	names := make([]string, len(compare.Dimensions))
	for i, d := range compare.Dimensions {
		names[i] = string(d)
	}
	return "", fmt.Errorf("want one of %s, got %q", strings.Join(names, ", "), s)
}

// parseInterspersed lets flags come after the files too (`compare a.json b.json --json`), as people type.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
