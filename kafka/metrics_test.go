package kafka

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestMetricsHotPathNoAllocs(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	allocs := testing.AllocsPerRun(1000, func() {
		m.request(0, time.Millisecond)
		m.request(999, time.Millisecond)
		m.bytesIn(100)
		m.bytesOut(100)
		m.errorCode(kerr.UnknownTopicOrPartition.Code)
		m.errorCode(kerr.UnknownServerError.Code)
		m.connOpened()
		m.connClosed()
	})
	if allocs != 0 {
		t.Fatalf("hot path allocates %v times per request", allocs)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("Produce")); got != 1001 {
		t.Errorf("Produce requests = %v, want 1001", got)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("Other")); got != 1001 {
		t.Errorf("Other requests = %v, want 1001", got)
	}
	if got := testutil.ToFloat64(m.ErrorCodes.WithLabelValues("UNKNOWN_TOPIC_OR_PARTITION")); got != 1001 {
		t.Errorf("UNKNOWN_TOPIC_OR_PARTITION = %v, want 1001", got)
	}
	if got := testutil.ToFloat64(m.ErrorCodes.WithLabelValues("UNKNOWN_SERVER_ERROR")); got != 1001 {
		t.Errorf("UNKNOWN_SERVER_ERROR = %v, want 1001", got)
	}
}

func TestMetricsNilDisabled(t *testing.T) {
	var m *Metrics
	m.request(0, time.Millisecond)
	m.bytesIn(1)
	m.bytesOut(1)
	m.errorCode(3)
	m.connOpened()
	m.connClosed()
}

// Codes a handler sets itself (not from a broker error) are counted too.
func TestHandlerSetCodesAreCounted(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	s := &Server{cfg: Config{Metrics: m}}
	if got := s.counted(kerr.InvalidRequiredAcks.Code); got != kerr.InvalidRequiredAcks.Code {
		t.Fatalf("counted returned %d", got)
	}
	s.counted(kerr.UnsupportedVersion.Code)
	s.counted(kerr.UnsupportedVersion.Code)
	if got := testutil.ToFloat64(m.ErrorCodes.WithLabelValues("INVALID_REQUIRED_ACKS")); got != 1 {
		t.Errorf("INVALID_REQUIRED_ACKS = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.ErrorCodes.WithLabelValues("UNSUPPORTED_VERSION")); got != 2 {
		t.Errorf("UNSUPPORTED_VERSION = %v, want 2", got)
	}
}
