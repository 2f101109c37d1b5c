package fleetsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Endpoint says where one replica serves. The command prints these (as JSON) for test harnesses.
type Endpoint struct {
	Replica string `json:"replica"`
	Engine  string `json:"engine"`
	// URL is the engine's base URL; MetricsPath is where its Prometheus text is (the receivers' defaults).
	URL         string `json:"endpoint"`
	MetricsPath string `json:"metrics_path"`
	// Instance is the replica's service.instance.id: what the engine receivers stamp on its metrics and
	// the simulator on its spans.
	Instance string    `json:"instance"`
	DCGM     string    `json:"dcgm_endpoint"`
	Host     string    `json:"node"`
	GPUs     []GPUInfo `json:"gpus"`
	// NCCLFiles is the glob of the replica's NCCL Inspector files, when the fleet writes them
	// (Config.NCCLDir) and the replica has tensor parallelism.
	NCCLFiles string `json:"nccl_files,omitempty"`
}

// GPUInfo identifies one simulated GPU as dcgm-exporter labels it.
type GPUInfo struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
}

type server struct {
	ln  net.Listener
	srv *http.Server
}

// Serve starts the HTTP endpoints: for replica i its engine on basePort+2i and its node's dcgm-exporter on
// basePort+2i+1, or on free ports when basePort is 0. Call it before running, so that the ground truth and
// the spans carry the replicas' real service.instance.id.
func (f *Fleet) Serve(host string, basePort int) ([]Endpoint, error) {
	var eps []Endpoint
	for _, rp := range f.replicas {
		engineLn, err := listen(host, basePort, 2*rp.idx)
		if err != nil {
			_ = f.closeServers()
			return nil, err
		}
		dcgmLn, err := listen(host, basePort, 2*rp.idx+1)
		if err != nil {
			engineLn.Close()
			_ = f.closeServers()
			return nil, err
		}
		engineMux, dcgmMux := http.NewServeMux(), http.NewServeMux()
		rp.routes(engineMux)
		dcgmMux.HandleFunc("GET /metrics", rp.textHandler(rp.dcgmMetrics))
		f.mu.Lock()
		rp.instance = engineLn.Addr().String()
		f.mu.Unlock()
		for _, s := range []*server{{ln: engineLn, srv: &http.Server{Handler: engineMux}}, {ln: dcgmLn, srv: &http.Server{Handler: dcgmMux}}} {
			s.srv.ReadHeaderTimeout = 5 * time.Second
			f.servers = append(f.servers, s)
			go s.srv.Serve(s.ln) //nolint:errcheck // ends with Close
		}
		ep := Endpoint{
			Replica: rp.name, Engine: rp.engine, URL: "http://" + rp.instance, MetricsPath: "/metrics",
			Instance: rp.instance, DCGM: "http://" + dcgmLn.Addr().String(), Host: rp.nodeName(),
			NCCLFiles: rp.ncclFiles(),
		}
		if rp.engine == EngineTRTLLM {
			ep.MetricsPath = "/prometheus/metrics"
		}
		for _, g := range rp.gpus {
			ep.GPUs = append(ep.GPUs, GPUInfo{Index: g.index, UUID: g.uuid})
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

func listen(host string, base, offset int) (net.Listener, error) {
	port := 0
	if base > 0 {
		port = base + offset
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// Close stops the HTTP endpoints and, when the fleet writes NCCL Inspector files, writes the collectives
// completed since the last dump and closes them.
func (f *Fleet) Close() error {
	err := f.closeServers()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nccl != nil {
		f.nccl.dump(f.now, true)
		err = errors.Join(err, f.nccl.close())
	}
	return err
}

func (f *Fleet) closeServers() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, s := range f.servers {
		if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	f.servers = nil
	return errors.Join(errs...)
}

func (rp *replica) nodeName() string { return fmt.Sprintf("sim-node-%d", rp.idx) }

func (rp *replica) routes(mux *http.ServeMux) {
	switch rp.engine {
	case EngineVLLM:
		rp.vllmRoutes(mux)
	case EngineSGLang:
		rp.sglangRoutes(mux)
	case EngineTRTLLM:
		rp.trtllmRoutes(mux)
	case EngineLlamaCpp:
		rp.llamaRoutes(mux)
	}
}

// textHandler serves a Prometheus exposition rendered with the fleet locked (a consistent snapshot).
func (rp *replica) textHandler(render func(now float64) []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		rp.f.mu.Lock()
		body := render(rp.f.now)
		rp.f.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(body) //nolint:errcheck // the client went away
	}
}

func (rp *replica) jsonHandler(render func(now float64) any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		rp.f.mu.Lock()
		v := render(rp.f.now)
		body, err := json.Marshal(v)
		rp.f.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body) //nolint:errcheck // the client went away
	}
}

// RenderMetrics returns what replica i serves at its engine's Prometheus path, and RenderDCGM what its
// node's dcgm-exporter serves, without HTTP (for tests and tools).
func (f *Fleet) RenderMetrics(i int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	rp := f.replicas[i]
	switch rp.engine {
	case EngineSGLang:
		return rp.sglangMetrics(f.now)
	case EngineTRTLLM:
		return rp.trtllmMetrics(f.now)
	case EngineLlamaCpp:
		return rp.llamaMetrics(f.now)
	}
	return rp.vllmMetrics(f.now)
}

// RenderDCGM returns replica i's node's dcgm-exporter exposition.
func (f *Fleet) RenderDCGM(i int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas[i].dcgmMetrics(f.now)
}

// bucketsFor gives each engine the histogram buckets its wire format uses.
func bucketsFor(engine string, maxModelLen int) map[quantity][]float64 {
	switch engine {
	case EngineSGLang:
		return sglangBuckets(maxModelLen)
	case EngineTRTLLM:
		return trtllmBuckets()
	case EngineLlamaCpp:
		return nil // llama.cpp exposes no histograms
	}
	return vllmBuckets(maxModelLen)
}
