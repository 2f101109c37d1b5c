// Package replaytest is an OpenAI-compatible stand-in server that the replay tests send workloads to.
package replaytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// StandIn is an OpenAI-compatible completions server for tests, to serve on loopback: it streams
// max_tokens chunks, 2 ms apart, and keeps what each request asked for and when it came.
type StandIn struct {
	mu       sync.Mutex
	received []Received
	// Fail, when set, says which requests (counted from 0) get a 503 instead of an answer.
	Fail func(n int) bool
}

// Received is one request as the stand-in saw it: when, for which model, the prompt's words, and the
// output length asked for.
type Received struct {
	At        time.Time
	Model     string
	Words     []string
	MaxTokens int
	MinTokens int
	IgnoreEOS bool
}

// ServeHTTP answers POST /v1/completions with a streamed completion of max_tokens chunks.
func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/completions" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var body struct {
		Model     string `json:"model"`
		Prompt    string `json:"prompt"`
		MaxTokens int    `json:"max_tokens"`
		MinTokens int    `json:"min_tokens"`
		IgnoreEOS bool   `json:"ignore_eos"`
		Stream    bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.Stream {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := len(s.received)
	s.received = append(s.received, Received{
		At: time.Now(), Model: body.Model, Words: strings.Fields(body.Prompt),
		MaxTokens: body.MaxTokens, MinTokens: body.MinTokens, IgnoreEOS: body.IgnoreEOS,
	})
	s.mu.Unlock()
	if s.Fail != nil && s.Fail(n) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	flusher := w.(http.Flusher)
	for i := range body.MaxTokens {
		fmt.Fprintf(w, "data: {\"choices\":[{\"text\":\" t%d\"}]}\n\n", i)
		flusher.Flush()
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"completion_tokens\":%d}}\n\ndata: [DONE]\n\n", body.MaxTokens)
}

// Requests is what the stand-in has received so far, in arrival order.
func (s *StandIn) Requests() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}
