package e2e

import "os"

// Every server the e2e tests start serves HTTP on a port of its own: the
// default --http-addr (127.0.0.1:8025) would collide between tests running
// in parallel and with a server running on the machine. A test may still
// pass --http-addr itself (the flag wins over the variable).
func init() {
	if _, ok := os.LookupEnv("POSTOFFICE_HTTP_ADDR"); !ok {
		os.Setenv("POSTOFFICE_HTTP_ADDR", "127.0.0.1:0")
	}
}
