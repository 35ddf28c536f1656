package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/broker"
)

// SASL/SCRAM users over the admin HTTP listener, Redpanda's way of solving
// the bootstrap problem: with SASL on every Kafka listener, the first user
// cannot be created over Kafka, but the admin listener (127.0.0.1 by
// default) can. `chronik user` talks to these routes:
//
//	GET    /v1/security/users         the users, their mechanisms and iterations
//	POST   /v1/security/users         {"username", "password", "mechanisms", "iterations"}: create
//	PUT    /v1/security/users/NAME    {"password", "mechanisms", "iterations"}: set the password
//	DELETE /v1/security/users/NAME    every credential of NAME
//
// Passwords are only ever in request bodies, never in URLs or logs.

// UserInfo is one user as GET /v1/security/users and `chronik user list
// --format json` show it.
type UserInfo struct {
	Name       string          `json:"name"`
	Mechanisms []UserMechanism `json:"mechanisms"`
}

// UserMechanism is one credential of a user.
type UserMechanism struct {
	Mechanism  string `json:"mechanism"`
	Iterations int32  `json:"iterations"`
}

// userRequest is the body of POST and PUT.
type userRequest struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Mechanisms []string `json:"mechanisms,omitempty"` // default both SCRAM mechanisms
	Iterations int32    `json:"iterations,omitempty"` // default 4096
}

// defaultUserIterations is Kafka's kafka-configs default.
const defaultUserIterations = 4096

// userRoutes adds the user routes to mux; b returns the broker once it is
// open (nil before: 503).
func userRoutes(mux *http.ServeMux, b func() *broker.Broker) {
	mux.HandleFunc("GET /v1/security/users", func(w http.ResponseWriter, r *http.Request) {
		br := b()
		if br == nil {
			httpError(w, http.StatusServiceUnavailable, "the broker is not open yet")
			return
		}
		out := []UserInfo{}
		for _, u := range br.ScramUsers() {
			ui := UserInfo{Name: u.Name}
			for _, m := range u.Mechanisms {
				ui.Mechanisms = append(ui.Mechanisms, UserMechanism{Mechanism: m.Mechanism.String(), Iterations: m.Iterations})
			}
			out = append(out, ui)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /v1/security/users", func(w http.ResponseWriter, r *http.Request) {
		setUser(w, r, b(), "", true)
	})
	mux.HandleFunc("PUT /v1/security/users/{name}", func(w http.ResponseWriter, r *http.Request) {
		setUser(w, r, b(), r.PathValue("name"), false)
	})
	mux.HandleFunc("DELETE /v1/security/users/{name}", func(w http.ResponseWriter, r *http.Request) {
		br := b()
		if br == nil {
			httpError(w, http.StatusServiceUnavailable, "the broker is not open yet")
			return
		}
		deleteUser(w, r, br)
	})
}

// deleteUser deletes every credential of the user the path names (404 if
// it has none).
func deleteUser(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	name := r.PathValue("name")
	var mechs []broker.ScramMechanism
	for _, u := range br.ScramUsers() {
		if u.Name == name {
			for _, m := range u.Mechanisms {
				mechs = append(mechs, m.Mechanism)
			}
		}
	}
	if len(mechs) == 0 {
		httpError(w, http.StatusNotFound, fmt.Sprintf("user %q does not exist", name))
		return
	}
	for _, m := range mechs {
		if err := br.DeleteScramCredential(r.Context(), name, m); err != nil {
			httpBrokerError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// setUser creates (POST: the user must not exist) or updates (PUT) a
// user's credentials.
func setUser(w http.ResponseWriter, r *http.Request, br *broker.Broker, name string, create bool) {
	if br == nil {
		httpError(w, http.StatusServiceUnavailable, "the broker is not open yet")
		return
	}
	var req userRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if create {
		name = req.Username
	} else if req.Username != "" && req.Username != name {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("username %q in the body, %q in the path", req.Username, name))
		return
	}
	if name == "" || strings.ContainsAny(name, "/") {
		httpError(w, http.StatusBadRequest, "username: must be non-empty and without /")
		return
	}
	if req.Password == "" {
		httpError(w, http.StatusBadRequest, "password: must not be empty")
		return
	}
	if req.Iterations == 0 {
		req.Iterations = defaultUserIterations
	}
	if len(req.Mechanisms) == 0 {
		req.Mechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}
	}
	exists := false
	for _, u := range br.ScramUsers() {
		exists = exists || u.Name == name
	}
	switch {
	case create && exists:
		httpError(w, http.StatusConflict, fmt.Sprintf("user %q already exists", name))
		return
	case !create && !exists:
		httpError(w, http.StatusNotFound, fmt.Sprintf("user %q does not exist", name))
		return
	}
	var creds []broker.ScramCredential
	for _, ms := range req.Mechanisms {
		m, ok := broker.ParseScramMechanism(strings.ToUpper(ms))
		if !ok {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("mechanisms: %q is not SCRAM-SHA-256 or SCRAM-SHA-512", ms))
			return
		}
		c, err := broker.NewScramCredential(m, req.Password, req.Iterations)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		creds = append(creds, c)
	}
	for _, c := range creds {
		if err := br.SetScramCredential(r.Context(), name, c); err != nil {
			httpBrokerError(w, err)
			return
		}
	}
	if create {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
}

// httpBrokerError answers a broker error: 400 for what the caller got
// wrong, 503 for what may pass (no controller), 500 otherwise.
func httpBrokerError(w http.ResponseWriter, err error) {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke) && (ke == kerr.UnacceptableCredential || ke == kerr.UnsupportedSaslMechanism):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.As(err, &ke) && ke == kerr.ResourceNotFound:
		httpError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &ke) && ke.Retriable, errors.Is(err, context.DeadlineExceeded):
		httpError(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpError(w, http.StatusInternalServerError, err.Error())
	}
}

// httpError answers {"message": msg} with code.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
