package smtp

// Observer receives events of the engine, for metrics. Its methods are
// called from many sessions at once and must be quick; they must not call
// back into the Server. A nil Server.Observer observes nothing.
type Observer interface {
	// ConnRejected: a connection was refused before its session started;
	// reason is "limit" (Limiter) or "shutdown".
	ConnRejected(reason string)
	// MailReply: the reply code to a MAIL command (250: a transaction
	// started).
	MailReply(code int)
	// MessageReply: the final reply code to a message (end of DATA or BDAT
	// LAST) and the octets of message data received.
	MessageReply(code int, size int64)
}

// nopObserver is the Observer of a Server without one.
type nopObserver struct{}

func (nopObserver) ConnRejected(string)     {}
func (nopObserver) MailReply(int)           {}
func (nopObserver) MessageReply(int, int64) {}

func (s *Server) observer() Observer {
	if s.Observer != nil {
		return s.Observer
	}
	return nopObserver{}
}
