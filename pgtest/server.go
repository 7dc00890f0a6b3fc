package pgtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvTestDatabase names the variable that points tests at an existing server
// instead of a throwaway one.
const EnvTestDatabase = "TEST_DATABASE_URL"

// EnvDatabase names the variable examples read for an existing server.
const EnvDatabase = "DATABASE_URL"

// dirPrefix starts the name of every throwaway server's temporary directory.
const dirPrefix = "pgtest-"

// Server is a PostgreSQL server for tests: either a throwaway one this
// process started, or an existing one named by an environment variable.
type Server struct {
	url   string      // connection string to the maintenance database
	dir   string      // temporary directory of a throwaway server; "" if external
	proc  *postmaster // the running throwaway server
	owned bool        // whether Stop shuts the server down

	replicaOf *Server // the primary of a replica (StartReplica); nil for a primary
}

// Options tunes a throwaway server. The zero value is what tests want.
type Options struct {
	// Durable keeps fsync and synchronous commit on, for benchmarks that
	// should pay what a production commit pays. Defaults to false: durability
	// off, which is faster and fine for data thrown away after the run.
	Durable bool
	// Settings are extra server settings (name -> value), written to the
	// server's configuration file after pgtest's own, so they win; only
	// where the server listens (listen_addresses, port,
	// unix_socket_directories) stays pgtest's.
	Settings map[string]string
}

// Start returns the server named by the environment variable env (for
// example EnvTestDatabase) if it is set, and otherwise starts a throwaway
// server with default Options. Call Stop when done.
func Start(ctx context.Context, env string) (*Server, error) {
	if u := os.Getenv(env); env != "" && u != "" {
		return &Server{url: u}, nil
	}
	return StartThrowaway(ctx, nil)
}

// StartThrowaway starts a new PostgreSQL server in a temporary directory.
// On Linux and macOS it listens only on a Unix socket in that directory; on
// Windows on a free TCP port of 127.0.0.1. It runs as the current user; as
// root on Linux it runs as the unprivileged "postgres" (or "nobody") user,
// since initdb refuses root. Stop shuts it down and removes every file.
//
// A test process that dies without Stop leaves its directory behind (on
// Linux its server stops with it; elsewhere the server may keep running).
// Each directory records the process that owns it, and StartThrowaway first
// stops the servers of owners that are gone and removes their directories.
func StartThrowaway(ctx context.Context, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	root := tempRoot(runtime.GOOS, os.TempDir())
	removeLeftovers(ctx, bin, root, os.TempDir())
	dir, err := os.MkdirTemp(root, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, owned: true}
	if err := writeOwner(dir); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if err := s.start(ctx, bin, opts); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin string, opts *Options) error {
	acct, err := serverAccount(s.dir)
	if err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, exe(runtime.GOOS, "initdb")),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = acct.initdbAttr()
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// wal_level, max_wal_senders and hot_standby are PostgreSQL's
	// defaults, stated because StartReplica depends on them.
	settings := map[string]string{"max_connections": "300", "shared_buffers": "256MB",
		"wal_level": "replica", "max_wal_senders": "10", "hot_standby": "on"}
	if !opts.Durable {
		settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"] = "off", "off", "off"
	}
	if err := appendSettings(data, settings); err != nil {
		return err
	}
	if err := appendSettings(data, opts.Settings); err != nil {
		return err
	}
	s.proc, s.url, err = launch(ctx, bin, s.dir, acct)
	if err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// appendSettings appends settings to the server's configuration file, where
// later lines win. A file spares quoting values on every platform's command
// line.
func appendSettings(data string, settings map[string]string) error {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = %s\n", name, confQuote(settings[name]))
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: configure server: %w", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: configure server: %w", err)
	}
	return nil
}

// confQuote quotes a value for postgresql.conf, where a quoted string takes
// backslash escapes and a doubled quote.
func confQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

// waitReady waits until the server accepts connections, it exits, or a
// minute has passed.
func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.url)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.proc.exited():
			return fmt.Errorf("pgtest: postgres exited during start (%v):\n%s", s.proc.err, s.serverLog())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: waiting for postgres: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after 60s: %v\n%s", err, s.serverLog())
		}
	}
}

// serverLog returns what the server wrote to its log file.
func (s *Server) serverLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

// URL returns the connection string of the server's maintenance database.
func (s *Server) URL() string { return s.url }

// Stop shuts a throwaway server down (fast shutdown) and removes its files.
// It does nothing for an external server. Calling it again is a no-op.
func (s *Server) Stop() error {
	if !s.owned {
		return nil
	}
	s.owned = false
	var err error
	if s.proc != nil {
		err = s.proc.stop()
	}
	if rmErr := removeAll(s.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("pgtest: remove %s: %w", s.dir, rmErr)
	}
	return err
}

// removeAll removes dir, retrying for up to ten seconds: on Windows a file
// stays in use for a moment after the process holding it has exited.
func removeAll(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-time.After(50 * time.Millisecond)
	}
}

// socketName is the longest name of a server's socket (or its lock file's
// stem) below its directory: postgres names it after the port.
const socketName = ".s.PGSQL.5432"

// tempRoot returns where to create a server's directory on goos, given the
// system's temporary directory tmp. A Unix socket path must fit in
// sockaddr_un (108 bytes on Linux, 104 on macOS and the BSDs, with the
// terminating NUL); macOS's per-user TMPDIR is long, so when the socket
// would not fit there the directory goes to /tmp instead.
func tempRoot(goos, tmp string) string {
	if goos == "windows" {
		return tmp
	}
	limit := 103
	if goos == "linux" || goos == "android" {
		limit = 107
	}
	// MkdirTemp appends a random uint32: at most 10 digits.
	if len(path.Join(tmp, dirPrefix+"4294967295", socketName)) > limit {
		return "/tmp"
	}
	return tmp
}

// errStopTimeout is the error of a server that ignored the shutdown request.
var errStopTimeout = errors.New("pgtest: postgres did not finish a fast shutdown in 30s; forced it down")
