package coordinator

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a coordinator error with the HTTP status the API answers with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errf(status int, format string, a ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, a...)}
}

func badRequest(format string, a ...any) error { return errf(http.StatusBadRequest, format, a...) }
func notFound(format string, a ...any) error   { return errf(http.StatusNotFound, format, a...) }
func conflict(format string, a ...any) error   { return errf(http.StatusConflict, format, a...) }

// statusOf maps an error to an HTTP status (500 for unknown ones).
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}
