package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Target is an OpenAI-compatible endpoint a workload is sent to (vLLM, SGLang, llama-server, TensorRT-LLM's
// trtllm-serve, a staging replica), and the bounds of what is sent.
type Target struct {
	// URL is the server's base (http://host:port); requests go to URL/v1/completions.
	URL string
	// Model, when set, replaces the recorded model name (a staging replica may serve it under another).
	Model string
	// MaxRequests and MaxDuration bound the replay: it stops sending at whichever comes first.
	MaxRequests int
	MaxDuration time.Duration
	// MaxInFlight bounds requests open at once; a request due while that many are open is not sent, and
	// counted (a replay must not become a load test the recording did not describe).
	MaxInFlight int
	// RequestTimeout bounds one request.
	RequestTimeout time.Duration
	// ExactLength asks the server to generate exactly the recorded output length (min_tokens and ignore_eos,
	// which vLLM, SGLang and llama-server accept); off, only max_tokens is sent.
	ExactLength bool
	Client      *http.Client
}

// Result is what one sent request met.
type Result struct {
	Request Request
	// SentAt is when it was sent, after the replay started; Late how far behind its recorded time that was.
	SentAt, Late time.Duration
	Status       int // HTTP status, 0 when no response came
	Err          string
	// Observed latencies (s) and the output tokens the server reported (its usage, else the streamed chunks).
	Observed     Latency
	OutputTokens int
}

// Outcome is a whole replay.
type Outcome struct {
	Results []Result
	// NotSent counts requests of the workload left out: past MaxRequests or MaxDuration, or due while
	// MaxInFlight were open.
	NotSentBounds, NotSentInFlight int
	Elapsed                        time.Duration
}

// Send replays the workload against the target at its arrival times (already scaled), streaming each
// response to see its first token. It returns when every sent request has ended.
func (t Target) Send(ctx context.Context, wl Workload) (Outcome, error) {
	if t.URL == "" {
		return Outcome{}, errors.New("no target URL")
	}
	client := t.Client
	if client == nil {
		client = &http.Client{}
	}
	endpoint := strings.TrimRight(t.URL, "/") + "/v1/completions"
	start := time.Now()
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		out     Outcome
		open    int
		results = make([]*Result, 0, len(wl))
	)
	for i, r := range wl {
		if (t.MaxRequests > 0 && i >= t.MaxRequests) || (t.MaxDuration > 0 && r.At > t.MaxDuration) {
			out.NotSentBounds = len(wl) - i
			break
		}
		if wait := time.Until(start.Add(r.At)); wait > 0 {
			select {
			case <-ctx.Done():
				out.NotSentBounds = len(wl) - i
				wg.Wait()
				return collect(out, results, start), ctx.Err()
			case <-time.After(wait):
			}
		}
		mu.Lock()
		if t.MaxInFlight > 0 && open >= t.MaxInFlight {
			mu.Unlock()
			out.NotSentInFlight++
			continue
		}
		open++
		res := &Result{Request: r, SentAt: time.Since(start)}
		res.Late = res.SentAt - r.At
		results = append(results, res)
		mu.Unlock()
		wg.Add(1)
		go func(index int, res *Result) {
			defer wg.Done()
			t.one(ctx, client, endpoint, index, res)
			mu.Lock()
			open--
			mu.Unlock()
		}(i, res)
	}
	wg.Wait()
	return collect(out, results, start), nil
}

func collect(out Outcome, results []*Result, start time.Time) Outcome {
	for _, r := range results {
		out.Results = append(out.Results, *r)
	}
	out.Elapsed = time.Since(start)
	return out
}

type completionRequest struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	MaxTokens int    `json:"max_tokens"`
	MinTokens int    `json:"min_tokens,omitempty"`
	IgnoreEOS bool   `json:"ignore_eos,omitempty"`
	Stream    bool   `json:"stream"`
	// include_usage makes the last chunk carry the token counts.
	StreamOptions map[string]bool `json:"stream_options"`
}

type completionChunk struct {
	Choices []struct {
		Text string `json:"text"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func (t Target) one(ctx context.Context, client *http.Client, endpoint string, index int, res *Result) {
	res.Observed = Latency{TTFT: math.NaN(), TPOT: math.NaN(), E2E: math.NaN(), Prefill: math.NaN(), CachedTokens: math.NaN()}
	r := res.Request
	model := r.Model
	if t.Model != "" {
		model = t.Model
	}
	body := completionRequest{
		Model: model, Prompt: Prompt(r, index), MaxTokens: r.OutputTokens, Stream: true,
		StreamOptions: map[string]bool{"include_usage": true},
	}
	if t.ExactLength {
		body.MinTokens, body.IgnoreEOS = r.OutputTokens, true
	}
	payload, err := json.Marshal(body)
	if err != nil {
		res.Err = err.Error()
		return
	}
	if t.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.RequestTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		res.Err = err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		res.Err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		return
	}
	chunks := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			break
		}
		var c completionChunk
		if json.Unmarshal([]byte(data), &c) != nil {
			continue
		}
		if len(c.Choices) > 0 && c.Choices[0].Text != "" {
			if chunks == 0 {
				res.Observed.TTFT = time.Since(sent).Seconds()
			}
			chunks++
		}
		if c.Usage != nil {
			res.OutputTokens = c.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		res.Err = err.Error()
	}
	res.Observed.E2E = time.Since(sent).Seconds()
	if res.OutputTokens == 0 {
		res.OutputTokens = chunks
	}
	if res.OutputTokens > 1 && !math.IsNaN(res.Observed.TTFT) {
		res.Observed.TPOT = (res.Observed.E2E - res.Observed.TTFT) / float64(res.OutputTokens-1)
	}
}
