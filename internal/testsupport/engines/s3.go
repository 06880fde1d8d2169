package engines

import (
	"context"
	"fmt"
	"go/build"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// VersitygwEnv names the versitygw binary to use, looked for first.
const VersitygwEnv = "POSTOFFICE_VERSITYGW"

// VersitygwModule is what .ci/run builds, at a pinned version.
const VersitygwModule = "github.com/versity/versitygw/cmd/versitygw"

// S3Server is a throwaway versitygw S3 server with the posix backend: its
// objects in a temporary directory, listening on 127.0.0.1 on a free port,
// one root account.
type S3Server struct {
	Endpoint string // http://127.0.0.1:port
	Access   string
	Secret   string
	Region   string

	bin  string
	dir  string // temporary directory: log, root/
	port int

	mu   sync.Mutex
	proc *proc
}

// S3 returns the endpoint (an http URL), the access and secret keys and a
// new, empty bucket of the package's shared S3 server (started at the
// first call, stopped by Main). The package must run its tests through
// Main.
func S3(t testing.TB) (endpoint, access, secret, bucket string) {
	t.Helper()
	needMain(t, "S3")
	shared.s3Once.Do(func() {
		shared.s3, shared.s3Err = startS3()
		if shared.s3Err == nil {
			atExit(shared.s3.remove)
		}
	})
	if shared.s3Err != nil {
		report(t, shared.s3Err)
	}
	s := shared.s3
	return s.Endpoint, s.Access, s.Secret, s.CreateBucket(t)
}

// NewS3Server starts an S3 server of t's own, removed when t ends: for the
// tests that stop and start it.
func NewS3Server(t testing.TB) *S3Server {
	t.Helper()
	s, err := startS3()
	if err != nil {
		report(t, err)
	}
	t.Cleanup(s.remove)
	return s
}

// Client returns a minio-go client of the server.
func (s *S3Server) Client() (*minio.Client, error) {
	return minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds:  credentials.NewStaticV4(s.Access, s.Secret, ""),
		Region: s.Region,
	})
}

// CreateBucket creates a new, empty bucket and returns its name. It is not
// removed: the server's directory goes when the server does.
func (s *S3Server) CreateBucket(t testing.TB) string {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	name := nextName("t-")
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Stop kills the server (as a crash would: requests in flight are cut) and
// waits until it has exited. Stopping a stopped server does nothing.
func (s *S3Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts a stopped server again on the same port, with the same
// objects, and waits until it answers. Starting a running server does
// nothing.
func (s *S3Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

func (s *S3Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop(syscall.SIGKILL)
	s.proc = nil
	return err
}

func (s *S3Server) remove() {
	_ = s.stop()
	_ = os.RemoveAll(s.dir)
}

func (s *S3Server) log() string { return filepath.Join(s.dir, "versitygw.log") }

// versitygwBin finds versitygw: VersitygwEnv, PATH, or GOPATH/bin (where
// .ci/run installs it).
func versitygwBin() (string, error) {
	if p := os.Getenv(VersitygwEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", errMissing{fmt.Sprintf("S3: %s=%s: %v", VersitygwEnv, p, err)}
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gopath, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errMissing{"S3: versitygw not found on PATH, in GOPATH/bin or in $" + VersitygwEnv + " (go install " + VersitygwModule + "@v1.8.0, as .ci/run does)"}
}

func startS3() (*S3Server, error) {
	bin, err := versitygwBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "postoffice-s3-")
	if err != nil {
		return nil, err
	}
	s := &S3Server{Access: "postoffice-test", Secret: "postoffice-test-secret", Region: "us-east-1", bin: bin, dir: dir}
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		s.remove()
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			s.remove()
			return nil, err
		}
		s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.port)
		err = s.start()
		if err == nil {
			return s, nil
		}
		// Another process may have taken the port meanwhile.
		if attempt == 2 || !strings.Contains(tail(s.log(), 4096), "address already in use") {
			s.remove()
			return nil, err
		}
	}
}

// start runs versitygw on s.port and waits until its health endpoint
// answers.
func (s *S3Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return nil
	}
	argv := []string{s.bin,
		"--port", "127.0.0.1:" + strconv.Itoa(s.port),
		"--access", s.Access, "--secret", s.Secret, "--region", s.Region,
		"--quiet", "--health", "/health",
		"posix", filepath.Join(s.dir, "root"),
	}
	p, err := startProc(argv, nil, s.log())
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	s.proc = p
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(StartTimeout)
	for {
		if p.exited() {
			s.proc = nil
			return fmt.Errorf("versitygw exited at start (%v):\n%s", p.err, tail(s.log(), 4096))
		}
		resp, err := client.Get(s.Endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			_ = p.stop(syscall.SIGKILL)
			s.proc = nil
			return fmt.Errorf("versitygw did not answer within %v: %v\n%s", StartTimeout, err, tail(s.log(), 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
