package smtp

import (
	"errors"
	"fmt"
)

// Error is an SMTP reply: a code, an RFC 3463 enhanced status code and text.
type Error struct {
	Code     int
	Enhanced string // "5.1.1"; empty for none
	Message  string
}

func (e *Error) Error() string {
	if e.Enhanced == "" {
		return fmt.Sprintf("%d %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Message)
}

// ErrAuthFailed is returned by Backend.Authenticate for wrong credentials.
var ErrAuthFailed = errors.New("smtp: authentication failed")
