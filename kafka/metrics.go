package kafka

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Metrics are the server's Prometheus metrics. Every per-API and per-code
// child is resolved when the Metrics is built, so the request path does an
// array index and an atomic add: no label lookup, no allocation. A nil
// *Metrics (Config.Metrics unset) disables them.
type Metrics struct {
	Requests    *prometheus.CounterVec   // chronik_kafka_requests_total{api}
	Latency     *prometheus.HistogramVec // chronik_kafka_request_duration_seconds{api}
	BytesIn     prometheus.Counter       // chronik_kafka_bytes_in_total
	BytesOut    prometheus.Counter       // chronik_kafka_bytes_out_total
	ErrorCodes  *prometheus.CounterVec   // chronik_kafka_error_responses_total{code}
	Connections prometheus.Gauge         // chronik_kafka_open_connections
	// chronik_kafka_rejected_connections_total{reason}: connections
	// closed at accept for max_connections or max_connections_per_ip.
	Rejected *prometheus.CounterVec
	// chronik_kafka_request_read_timeouts_total: connections closed
	// because a frame was not complete within the request read timeout.
	ReadTimeouts prometheus.Counter

	reqByKey [128]prometheus.Counter
	latByKey [128]prometheus.Observer
	reqOther prometheus.Counter
	rejTotal prometheus.Counter
	rejPerIP prometheus.Counter
	latOther prometheus.Observer
	byCode   [maxMetricCode + 1]prometheus.Counter
	unknown  prometheus.Counter // UNKNOWN_SERVER_ERROR (-1)
	codeElse prometheus.Counter
}

// maxMetricCode is the largest Kafka error code with its own pre-resolved
// child; larger (and negative, bar -1) codes count as "OTHER".
const maxMetricCode = 127

// NewMetrics builds the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chronik_kafka_requests_total",
			Help: "Kafka requests handled, by API.",
		}, []string{"api"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chronik_kafka_request_duration_seconds",
			Help:    "Time from a request's handler starting to its response being ready, by API.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api"}),
		BytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chronik_kafka_bytes_in_total",
			Help: "Bytes of Kafka request frames read, size prefix included.",
		}),
		BytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chronik_kafka_bytes_out_total",
			Help: "Bytes of Kafka response frames written, size prefix included.",
		}),
		ErrorCodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chronik_kafka_error_responses_total",
			Help: "Errors answered to clients for broker failures, by Kafka error code name.",
		}, []string{"code"}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chronik_kafka_open_connections",
			Help: "Kafka client connections currently open.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chronik_kafka_rejected_connections_total",
			Help: "Kafka client connections closed at accept because a connection limit was reached, by limit (max_connections, max_connections_per_ip).",
		}, []string{"reason"}),
		ReadTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chronik_kafka_request_read_timeouts_total",
			Help: "Kafka client connections closed because a request frame was not complete within the request read timeout.",
		}),
	}
	m.rejTotal = m.Rejected.WithLabelValues("max_connections")
	m.rejPerIP = m.Rejected.WithLabelValues("max_connections_per_ip")
	for i := range apis {
		a := &apis[i]
		m.reqByKey[a.key] = m.Requests.WithLabelValues(a.name)
		m.latByKey[a.key] = m.Latency.WithLabelValues(a.name)
	}
	m.reqOther = m.Requests.WithLabelValues("Other")
	m.latOther = m.Latency.WithLabelValues("Other")
	for code := 1; code <= maxMetricCode; code++ {
		if e := kerr.TypedErrorForCode(int16(code)); e != nil && e.Code == int16(code) {
			m.byCode[code] = m.ErrorCodes.WithLabelValues(e.Message)
		}
	}
	m.unknown = m.ErrorCodes.WithLabelValues(kerr.UnknownServerError.Message)
	m.codeElse = m.ErrorCodes.WithLabelValues("OTHER")
	reg.MustRegister(m.Requests, m.Latency, m.BytesIn, m.BytesOut, m.ErrorCodes, m.Connections, m.Rejected, m.ReadTimeouts)
	return m
}

// request records one request of API key that took d.
func (m *Metrics) request(key int16, d time.Duration) {
	if m == nil {
		return
	}
	c, o := m.reqOther, m.latOther
	if key >= 0 && int(key) < len(m.reqByKey) && m.reqByKey[key] != nil {
		c, o = m.reqByKey[key], m.latByKey[key]
	}
	c.Inc()
	o.Observe(d.Seconds())
}

func (m *Metrics) bytesIn(n int) {
	if m != nil {
		m.BytesIn.Add(float64(n))
	}
}

func (m *Metrics) bytesOut(n int) {
	if m != nil {
		m.BytesOut.Add(float64(n))
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.Connections.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.Connections.Dec()
	}
}

// connRejected counts a connection closed at accept for a limit: reason
// is "max_connections" or "max_connections_per_ip".
func (m *Metrics) connRejected(reason string) {
	if m == nil {
		return
	}
	if reason == "max_connections" {
		m.rejTotal.Inc()
		return
	}
	m.rejPerIP.Inc()
}

func (m *Metrics) requestReadTimeout() {
	if m != nil {
		m.ReadTimeouts.Inc()
	}
}

// errorCode records one error code answered (0 is not an error).
func (m *Metrics) errorCode(code int16) {
	if m == nil || code == 0 {
		return
	}
	if code > 0 && code <= maxMetricCode && m.byCode[code] != nil {
		m.byCode[code].Inc()
		return
	}
	if code == kerr.UnknownServerError.Code {
		m.unknown.Inc()
		return
	}
	m.codeElse.Inc()
}
