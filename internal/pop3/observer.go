package pop3

// Observer receives events of the engine, for metrics. Its methods are
// called from many sessions at once and must be quick; they must not call
// back into the Server. Logins and deletions are seen by the Backend and
// its Maildrop, so they are not reported here. A nil Server.Observer
// observes nothing.
type Observer interface {
	// ConnRejected: a connection was refused before its session started;
	// reason is "limit" (Limiter) or "shutdown".
	ConnRejected(reason string)
	// Retrieved: a RETR sent a whole message of size octets.
	Retrieved(size int64)
}

// nopObserver is the Observer of a Server without one.
type nopObserver struct{}

func (nopObserver) ConnRejected(string) {}
func (nopObserver) Retrieved(int64)     {}

func (s *Server) observer() Observer {
	if s.Observer != nil {
		return s.Observer
	}
	return nopObserver{}
}
