package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvTestDatabase names the variable that points tests at an existing server
// instead of a throwaway one.
const EnvTestDatabase = "TEST_DATABASE_URL"

// EnvDatabase names the variable examples read for an existing server.
const EnvDatabase = "DATABASE_URL"

// Server is a PostgreSQL server for tests: either a throwaway one this
// process started, or an existing one named by an environment variable.
type Server struct {
	url   string    // connection string to the maintenance database
	dir   string    // data and socket directory of a throwaway server; "" if external
	cmd   *exec.Cmd // the postmaster of a throwaway server
	owned bool      // whether Stop shuts the server down
	exit  chan error
}

// Options tunes a throwaway server. The zero value is what tests want.
type Options struct {
	// Durable keeps fsync and synchronous commit on, for benchmarks that
	// should pay what a production commit pays. Defaults to false: durability
	// off, which is faster and fine for data thrown away after the run.
	Durable bool
	// Settings are extra server settings (name -> value), passed as -c flags.
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

// StartThrowaway starts a new PostgreSQL server in a temporary directory,
// listening only on a private Unix socket. As root it runs the server as the
// unprivileged "postgres" (or "nobody") user, since initdb refuses root.
// Stop shuts it down and removes every file.
func StartThrowaway(ctx context.Context, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, owned: true, exit: make(chan error, 1)}
	if err := s.start(ctx, bin, opts); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin string, opts *Options) error {
	cred, err := serverUser()
	if err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(s.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: hand %s to the server user: %w", s.dir, err)
		}
	}
	data := filepath.Join(s.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	args := []string{"-D", data, "-k", s.dir, "-c", "listen_addresses=", "-p", "5432",
		"-c", "max_connections=300", "-c", "shared_buffers=256MB"}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Settings)) {
		args = append(args, "-c", name+"="+opts.Settings[name])
	}
	var log bytes.Buffer
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.Stdout, s.cmd.Stderr = &log, &log
	// Pdeathsig: if this process dies without Stop, the server goes too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { s.exit <- s.cmd.Wait() }()
	s.url = (&url.URL{Scheme: "postgres", Path: "/postgres",
		RawQuery: url.Values{"host": {s.dir}, "port": {"5432"}, "user": {"postgres"}, "sslmode": {"disable"}}.Encode()}).String()
	return s.waitReady(ctx, &log)
}

func (s *Server) waitReady(ctx context.Context, log *bytes.Buffer) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.url)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case exitErr := <-s.exit:
			s.exit <- exitErr
			return fmt.Errorf("pgtest: postgres exited during start (%v):\n%s", exitErr, log.String())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: waiting for postgres: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not ready after 60s: %v\n%s", err, log.String())
		}
	}
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
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exit:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exit
			err = errors.New("pgtest: postgres did not shut down in 30s; killed")
		}
	}
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("pgtest: remove %s: %w", s.dir, rmErr)
	}
	return err
}

// FindBinaries returns the directory holding initdb and postgres: from PATH,
// then `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return majorOf(b) - majorOf(a) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) found in PATH, `pg_config --bindir` or /usr/lib/postgresql/*/bin; install the server (Debian: apt-get install postgresql) or set " + EnvTestDatabase)
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// serverUser returns the credential to run the server with: nil (this
// process's user) unless running as root, where it is "postgres", or "nobody".
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgtest: running as root and no unprivileged user (postgres, nobody) to run the server as")
}
