package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus series. They are registered on the
// registry passed in Config (never a global one), so several nodes can live
// in one process, as the tests and `petrel dev` do.
type metrics struct {
	requests      *prometheus.CounterVec   // model, version, outcome (success|failure)
	requestLat    *prometheus.HistogramVec // model, version
	queueLat      *prometheus.HistogramVec
	computeLat    *prometheus.HistogramVec
	batchSize     *prometheus.HistogramVec
	cacheHits     *prometheus.CounterVec // model
	cacheMisses   *prometheus.CounterVec
	loadedModels  prometheus.Gauge
	loadedBytes   prometheus.Gauge
	inflight      prometheus.Gauge
	modelProvider *prometheus.GaugeVec   // model, version, provider = 1
	forwards      *prometheus.CounterVec // result: ok | error (a peer's non-200) | failed (nobody answered)
	syncs         *prometheus.CounterVec // source: disk | peer | object_store | failed
}

func newMetrics(reg prometheus.Registerer) *metrics {
	lat := []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}
	mv := []string{"model", "version"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_inference_requests_total", Help: "Inference requests by model, version and outcome.",
		}, []string{"model", "version", "outcome"}),
		requestLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "petrel_inference_request_duration_seconds", Help: "Time from request received to response written.", Buckets: lat,
		}, mv),
		queueLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "petrel_inference_queue_duration_seconds", Help: "Time a request waited in the scheduler queue.", Buckets: lat,
		}, mv),
		computeLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "petrel_inference_compute_duration_seconds", Help: "Time of one runtime execution (one batch).", Buckets: lat,
		}, mv),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "petrel_inference_batch_size", Help: "Rows per runtime execution.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}, mv),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_response_cache_hits_total", Help: "Response cache hits.",
		}, []string{"model"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_response_cache_misses_total", Help: "Response cache misses.",
		}, []string{"model"}),
		loadedModels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "petrel_models_loaded", Help: "Model versions loaded and ready.",
		}),
		loadedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "petrel_models_loaded_bytes", Help: "Bytes of model files loaded.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "petrel_inference_inflight_requests", Help: "Inference requests being handled.",
		}),
		modelProvider: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_model_execution_provider", Help: "1 for the execution provider each loaded model version runs on.",
		}, []string{"model", "version", "provider"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_forwarded_requests_total", Help: "Inference requests this node forwarded to a peer or the fallback tier, by result.",
		}, []string{"result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_model_syncs_total", Help: "Model versions installed at the coordinator's request, by where the artifact came from (or failed).",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.requestLat, m.queueLat, m.computeLat, m.batchSize,
			m.cacheHits, m.cacheMisses, m.loadedModels, m.loadedBytes, m.inflight, m.modelProvider, m.forwards, m.syncs)
	}
	return m
}

// schedObserver feeds one model version's scheduler timings into metrics
// and the per-model statistics endpoint.
type schedObserver struct {
	queue, compute prometheus.Observer
	batch          prometheus.Observer
	stats          *modelStats
}
