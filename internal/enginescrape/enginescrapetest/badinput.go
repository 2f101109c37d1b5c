package enginescrapetest

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"

	"github.com/servescope/servescope/internal/enginescrape"
)

// BadInput is what CheckBadInput needs to know about an engine receiver and one page of its engine.
type BadInput struct {
	Type   component.Type
	Engine enginescrape.Engine
	// Config returns a fresh default configuration of the receiver.
	Config func() *enginescrape.Config
	// Page is a good metrics page of the engine; MetricsPath is where the engine serves it.
	Page        []byte
	MetricsPath string
	// Gauge is a gauge family of Page before its last sample line, which a page cut short keeps.
	Gauge string
	// Others are the engine's other endpoints (its version), answered as they would be, by path.
	Others map[string][]byte
}

// CheckBadInput runs the receiver's scraper against the ways an engine endpoint fails: a body cut short
// inside a line, NaN samples, an HTML error page, a refused connection and a connection reset before an
// answer. Each is scraped three times and said in exactly one warning, never a panic, and what was good in
// the page still arrives.
func CheckBadInput(t *testing.T, in BadInput) {
	t.Helper()
	require.Contains(t, string(in.Page), in.Gauge+"{", "the good page has the gauge")
	last := bytes.LastIndexByte(bytes.TrimRight(in.Page, "\n"), '\n')
	require.Positive(t, last)
	truncated := in.Page[:last+1+(len(bytes.TrimRight(in.Page, "\n"))-last-1)/2] // halfway into the last line
	withNaN := append(append([]byte{}, in.Page...), []byte("\n"+in.Gauge+"{badinput=\"nan\"} NaN\n")...)
	html := []byte("<html>\n<head><title>502 Bad Gateway</title></head>\n<body><h1>Bad Gateway</h1></body>\n</html>\n")

	serve := func(t *testing.T, status int, contentType string, body []byte) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if other, ok := in.Others[r.URL.Path]; ok {
				_, _ = w.Write(other)
				return
			}
			if r.URL.Path != in.MetricsPath {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, c := range []struct {
		name     string
		endpoint func(t *testing.T) string
		up       float64
	}{
		{"truncated", func(t *testing.T) string { return serve(t, http.StatusOK, "text/plain", truncated) }, 1},
		{"nan", func(t *testing.T) string { return serve(t, http.StatusOK, "text/plain", withNaN) }, 1},
		{"html_error_page", func(t *testing.T) string { return serve(t, http.StatusBadGateway, "text/html", html) }, 0},
		{"html_with_200", func(t *testing.T) string { return serve(t, http.StatusOK, "text/html", html) }, 0},
		{"refused", func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := l.Addr().String()
			require.NoError(t, l.Close()) // nobody listens there now
			return "http://" + addr
		}, 0},
		{"reset", func(t *testing.T) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					if tcp, ok := conn.(*net.TCPConn); ok {
						_ = tcp.SetLinger(0) // an RST, not a FIN
					}
					_ = conn.Close()
				}
			}))
			t.Cleanup(srv.Close)
			return srv.URL
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewRig(t, in.Type, in.Config(), in.Engine, c.endpoint(t))
			md := r.Scrape(t, 3)
			assert.Equal(t, map[string]float64{"": c.up}, Gauges(md, "llm.engine.up"))
			assert.Equal(t, 1, r.Warnings(), "one warning for three scrapes: %v", r.Logs.All())
			if c.up == 1 {
				assert.NotEmpty(t, Gauges(md, in.Gauge), "the good series around the bad input arrive")
				for attrs := range Gauges(md, in.Gauge) {
					assert.NotContains(t, attrs, "badinput", "the NaN sample is dropped")
				}
			}
		})
	}
}
