package replay

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"
)

// MooncakeBlockTokens is the block size of Mooncake traces (and Dynamo's tools that read them): one hash id
// stands for 512 prompt tokens, and two requests whose first k ids agree share their first k blocks.
const MooncakeBlockTokens = 512

// mooncakeLine is one request of a Mooncake trace: arrival in milliseconds, lengths in tokens, and one hash
// id per block of the prompt.
type mooncakeLine struct {
	Timestamp    int64   `json:"timestamp"`
	InputLength  int     `json:"input_length"`
	OutputLength int     `json:"output_length"`
	HashIDs      []int64 `json:"hash_ids"`
}

// WriteMooncake writes the workload as a Mooncake trace. A family's shared prefix becomes the same hash
// ids for the whole blocks it covers, numbered per family; every other block gets an id of its own.
func WriteMooncake(w io.Writer, wl Workload) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	familyIDs := map[string][]int64{}
	next := int64(0)
	for _, r := range wl {
		blocks := (r.PromptTokens + MooncakeBlockTokens - 1) / MooncakeBlockTokens
		shared := 0
		if r.Family != "" {
			shared = r.PrefixTokens / MooncakeBlockTokens
		}
		ids := familyIDs[r.Family]
		for len(ids) < shared {
			ids = append(ids, next)
			next++
		}
		if r.Family != "" {
			familyIDs[r.Family] = ids
		}
		line := mooncakeLine{
			Timestamp: r.At.Milliseconds(), InputLength: r.PromptTokens, OutputLength: r.OutputTokens,
			HashIDs: append([]int64(nil), ids[:shared]...),
		}
		for len(line.HashIDs) < blocks {
			line.HashIDs = append(line.HashIDs, next)
			next++
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadMooncake reads a Mooncake trace as a workload. Requests whose first hash id is the same are a family
// (named after that id); a request's shared prefix is the leading blocks it has in common with the
// family's first request (for that one, the most any other has in common with it), and a request alone in
// its family shares nothing. The model is the one given: a trace does not say it. A line that is not a
// Mooncake request is an error naming its line.
func ReadMooncake(r io.Reader, model string) (Workload, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var (
		wl     Workload
		hashes [][]int64
	)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var line mooncakeLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("line %d: not a Mooncake trace line: %w", n, err)
		}
		if line.InputLength < 1 || line.OutputLength < 1 || line.Timestamp < 0 {
			return nil, fmt.Errorf("line %d: want timestamp >= 0 and input_length, output_length >= 1", n)
		}
		wl = append(wl, Request{
			At: time.Duration(line.Timestamp) * time.Millisecond, ID: "mooncake-" + strconv.Itoa(n), Model: model,
			Tenant: "unknown", PromptTokens: line.InputLength, OutputTokens: line.OutputLength,
			Recorded: Latency{TTFT: math.NaN(), TPOT: math.NaN(), E2E: math.NaN(), Prefill: math.NaN(), CachedTokens: math.NaN()},
		})
		hashes = append(hashes, line.HashIDs)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(wl) == 0 {
		return nil, errors.New("no requests in the trace")
	}
	first := map[int64]int{} // family head id -> index of its first request
	for i, ids := range hashes {
		if len(ids) == 0 {
			continue
		}
		head, ok := first[ids[0]]
		if !ok {
			first[ids[0]] = i
			continue
		}
		common := commonPrefix(hashes[head], ids)
		family := "block-" + strconv.FormatInt(ids[0], 10)
		wl[i].Family, wl[i].PrefixTokens = family, min(common*MooncakeBlockTokens, wl[i].PromptTokens)
		wl[head].Family = family
		wl[head].PrefixTokens = max(wl[head].PrefixTokens, min(common*MooncakeBlockTokens, wl[head].PromptTokens))
	}
	sort.SliceStable(wl, func(i, j int) bool { return wl[i].At < wl[j].At })
	return wl, nil
}

func commonPrefix(a, b []int64) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
