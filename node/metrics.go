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

	// Feedback, drift and online learning (node/feedback.go).
	feedbackExamples   *prometheus.CounterVec // model, source: inputs | id
	feedbackRejected   *prometheus.CounterVec // code: the HTTP status
	feedbackAppendLat  prometheus.Histogram
	feedbackLogBytes   prometheus.Gauge
	rememberedRequests *prometheus.GaugeVec   // model
	prequentialLabels  *prometheus.CounterVec // model, version
	prequentialCorrect *prometheus.CounterVec // model, version
	prequentialAcc     *prometheus.GaugeVec   // model, version
	featurePSI         *prometheus.GaugeVec   // model, version, feature (top-k only)
	driftPSIMax        *prometheus.GaugeVec   // model, version
	onlineSteps        *prometheus.CounterVec // model
	onlineExamples     *prometheus.CounterVec // model
	onlineDropped      *prometheus.CounterVec // model
	onlineLoss         *prometheus.GaugeVec   // model

	// WebAssembly transforms (node/transforms.go).
	transformLat  *prometheus.HistogramVec // model, stage (pre|post)
	transformErrs *prometheus.CounterVec   // model, stage, kind

	// Escalation to a central model (node/escalate.go).
	escalations *prometheus.CounterVec // model, result: confident | escalated | failed
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
		feedbackExamples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_feedback_examples_total", Help: "Labelled examples written to the feedback log, by source: inputs (sent with the label) or id (label for a remembered request).",
		}, []string{"model", "source"}),
		feedbackRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_feedback_rejected_total", Help: "Feedback requests refused, by HTTP status.",
		}, []string{"code"}),
		feedbackAppendLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "petrel_feedback_append_duration_seconds", Help: "Time to make a feedback request's examples durable (write and, with fsync always, sync).", Buckets: lat,
		}),
		feedbackLogBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "petrel_feedback_log_bytes", Help: "Bytes of the feedback log's segment files.",
		}),
		rememberedRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_feedback_remembered_requests", Help: "Inference requests whose inputs are remembered for a label that may arrive later.",
		}, []string{"model"}),
		prequentialLabels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_prequential_labels_total", Help: "Labels received for requests the version served (prequential evaluation).",
		}, mv),
		prequentialCorrect: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_prequential_correct_total", Help: "Labels that matched the class the version predicted.",
		}, mv),
		prequentialAcc: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_prequential_accuracy", Help: "Fraction of labelled requests the version predicted correctly.",
		}, mv),
		featurePSI: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_feature_psi", Help: "Population stability index of an input feature over the recent window against the version's baseline; only the 16 most drifting features are exported.",
		}, []string{"model", "version", "feature"}),
		driftPSIMax: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_drift_psi_max", Help: "Largest population stability index over the version's input features.",
		}, mv),
		onlineSteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_online_learning_steps_total", Help: "SGD steps taken on the local copy of a model.",
		}, []string{"model"}),
		onlineExamples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_online_learning_examples_total", Help: "Feedback examples the local copy of a model was trained on.",
		}, []string{"model"}),
		onlineDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "petrel_online_learning_dropped_total", Help: "Feedback examples not trained on: the queue was full, or the model cannot be trained here.",
		}, []string{"model"}),
		onlineLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "petrel_online_learning_loss", Help: "Mean loss of the last online learning step's batch, before the step.",
		}, []string{"model"}),
	}
	m.transformLat = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "petrel_transform_duration_seconds", Help: "Time of one call of a model's pre- or post-processing WebAssembly transform.",
		Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
	}, []string{"model", "stage"})
	m.transformErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_transform_errors_total", Help: "Failed transform calls, by kind: client (the guest refused the input), input_too_large, timeout, trap, oom, too_large, unfit (pre's tensors do not fit the model), closed, canceled, other.",
	}, []string{"model", "stage", "kind"})
	m.escalations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_escalations_total", Help: "Requests to models with an escalation policy, by result: confident (the edge answer was sure), escalated (the central model's answer was returned), failed (escalation was needed but the edge answer was returned). The escalation rate is (escalated+failed)/all.",
	}, []string{"model", "result"})
	if reg != nil {
		reg.MustRegister(m.escalations)
		reg.MustRegister(m.transformLat, m.transformErrs)
		reg.MustRegister(m.requests, m.requestLat, m.queueLat, m.computeLat, m.batchSize,
			m.cacheHits, m.cacheMisses, m.loadedModels, m.loadedBytes, m.inflight, m.modelProvider, m.forwards, m.syncs,
			m.feedbackExamples, m.feedbackRejected, m.feedbackAppendLat, m.feedbackLogBytes, m.rememberedRequests,
			m.prequentialLabels, m.prequentialCorrect, m.prequentialAcc, m.featurePSI, m.driftPSIMax,
			m.onlineSteps, m.onlineExamples, m.onlineDropped, m.onlineLoss)
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
