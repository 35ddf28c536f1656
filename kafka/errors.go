package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// errorCode maps a broker error to its Kafka error code: the *kerr.Error it
// wraps, REQUEST_TIMED_OUT for a missed deadline, else UNKNOWN_SERVER_ERROR.
func errorCode(err error) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return kerr.RequestTimedOut.Code
	}
	return kerr.UnknownServerError.Code
}

// codeOf is errorCode that also logs errors the broker did not classify:
// they are bugs or I/O failures an operator should see.
func (s *Server) codeOf(err error, what string) int16 {
	code := errorCode(err)
	s.cfg.Metrics.errorCode(code)
	if code == kerr.UnknownServerError.Code && !errors.Is(err, context.Canceled) {
		s.log.Error().Err(err).Msg(what)
	}
	return code
}

// errorMessage is the message for a response's ErrorMessage field: nil on
// success, the broker's error text otherwise.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	m := err.Error()
	return &m
}

// counted records code in the error-code metric and returns it, for codes
// a handler sets itself rather than getting from the broker (codeOf).
func (s *Server) counted(code int16) int16 {
	s.cfg.Metrics.errorCode(code)
	return code
}

// groupCode maps an error of a group call to its Kafka code. A call that
// ended with its context (the client left, or the server is draining) is
// NOT_COORDINATOR: the client finds the coordinator again and rejoins.
func (s *Server) groupCode(err error, what string) int16 {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return kerr.NotCoordinator.Code
	}
	return s.codeOf(err, what)
}
