package engines

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBinEnv names a directory holding initdb and postgres, searched first.
const PgBinEnv = "POSTOFFICE_PG_BIN"

// Cluster is a throwaway PostgreSQL cluster: its data in a temporary
// directory, listening on 127.0.0.1 on a free port and on a Unix socket in
// that directory, with fsync and synchronous_commit on (the settings a
// durable deployment runs with), trust authentication for the superuser
// "postgres".
type Cluster struct {
	bin  string // directory of initdb and postgres
	dir  string // temporary directory: socket, log, data/
	cred *syscall.Credential
	port int

	mu   sync.Mutex
	proc *proc
}

// Postgres returns the URL of a new, empty database of the package's
// shared cluster (started at the first call, stopped by Main), dropped
// when t ends. The package must run its tests through Main.
func Postgres(t testing.TB) (dsn string) {
	t.Helper()
	needMain(t, "Postgres")
	shared.pgOnce.Do(func() {
		shared.pg, shared.pgErr = startCluster()
		if shared.pgErr == nil {
			atExit(shared.pg.remove)
		}
	})
	if shared.pgErr != nil {
		report(t, shared.pgErr)
	}
	return shared.pg.CreateDatabase(t)
}

// NewPostgres starts a cluster of t's own, removed when t ends: for the
// tests that stop and start PostgreSQL. Its DSN is that of the database
// "postgres"; CreateDatabase makes more.
func NewPostgres(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		report(t, err)
	}
	t.Cleanup(c.remove)
	return c
}

// DSN returns the URL of the cluster's database "postgres" over TCP.
func (c *Cluster) DSN() string { return c.dsn("postgres") }

func (c *Cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Port returns the TCP port the cluster listens on (the same across Stop
// and Start).
func (c *Cluster) Port() int { return c.port }

// CreateDatabase creates a new, empty database, dropped (connections and
// all) when t ends, and returns its URL.
func (c *Cluster) CreateDatabase(t testing.TB) string {
	t.Helper()
	name := strings.ReplaceAll(nextName("t"), "-", "_")
	if err := c.exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if c.running() {
			if err := c.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
				t.Errorf("drop database %s: %v", name, err)
			}
		}
	})
	return c.dsn(name)
}

// Stop shuts the cluster down in immediate mode (as a crash would: open
// connections are cut, nothing is checkpointed) and waits until it has
// exited. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts a stopped cluster again on the same port and waits until
// it accepts connections (after crash recovery). Starting a running
// cluster does nothing.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && !c.proc.exited()
}

func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	err := c.proc.stop(syscall.SIGQUIT) // immediate shutdown
	c.proc = nil
	return err
}

// remove stops the cluster and removes its directory.
func (c *Cluster) remove() {
	_ = c.stop()
	_ = os.RemoveAll(c.dir)
}

// exec runs one statement as the superuser in the database "postgres".
func (c *Cluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// pgBinDir finds the directory of initdb and postgres: PgBinEnv, the
// directory initdb on PATH resolves to, or the newest
// /usr/lib/postgresql/*/bin (Debian's layout, not on PATH).
func pgBinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(PgBinEnv); dir != "" {
		if has(dir) {
			return dir, nil
		}
		return "", errMissing{fmt.Sprintf("PostgreSQL: %s=%s holds no initdb and postgres", PgBinEnv, dir)}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	return "", errMissing{"PostgreSQL server binaries not found: no initdb on PATH, in /usr/lib/postgresql/*/bin or in $" + PgBinEnv + " (Debian: apt-get install postgresql)"}
}

// pgMajor is the version number of a /usr/lib/postgresql/N/bin path.
func pgMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// pgCredential returns whom the cluster runs as: nil (ourselves), or the
// "postgres" system user when we are root (initdb and postgres refuse to
// run as root).
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errMissing{"PostgreSQL: running as root and there is no postgres system user to run the cluster as: " + err.Error()}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user: uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startCluster creates a cluster with initdb and starts it.
func startCluster() (*Cluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "postoffice-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir, cred: cred}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			c.remove()
			return nil, err
		}
	}
	// --no-sync: initdb's own files are not fsynced (a crash of the
	// machine during a test run is not what the tests are about); the
	// server runs with fsync on.
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", c.data(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		c.remove()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			c.remove()
			return nil, err
		}
		err = c.start()
		if err == nil {
			return c, nil
		}
		// Another process may have taken the port meanwhile.
		if attempt == 2 || !strings.Contains(tail(c.log(), 4096), "could not bind") {
			c.remove()
			return nil, err
		}
	}
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) log() string  { return filepath.Join(c.dir, "postgres.log") }

// start runs postgres on c.port and waits until it accepts connections.
func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil && !c.proc.exited() {
		return nil
	}
	argv := []string{filepath.Join(c.bin, "postgres"), "-D", c.data(),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "full_page_writes=on",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	}
	p, err := startProc(argv, c.cred, c.log())
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc = p
	deadline := time.Now().Add(StartTimeout)
	for {
		if p.exited() {
			c.proc = nil
			return fmt.Errorf("postgres exited at start (%v):\n%s", p.err, tail(c.log(), 4096))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.DSN())
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if time.Now().After(deadline) {
			_ = p.stop(syscall.SIGQUIT)
			c.proc = nil
			return fmt.Errorf("postgres did not accept connections within %v: %v\n%s", StartTimeout, err, tail(c.log(), 4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
