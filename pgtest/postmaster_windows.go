package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is the user the server runs as: always this process's user.
// pg_ctl drops administrator rights itself, which postgres requires.
type account struct{}

func serverAccount(string) (*account, error) { return &account{}, nil }

func (*account) initdbAttr() *syscall.SysProcAttr { return nil }

// postmaster is a throwaway server started by pg_ctl. It is not a child of
// this process (os.Interrupt cannot be sent on Windows, and postgres refuses
// to run with administrator rights, which pg_ctl drops), so pg_ctl also
// stops it.
type postmaster struct {
	pgCtl string
	data  string
	err   error // never set: pg_ctl start -w reports a failed start itself
}

// launch starts the server in data under dir with pg_ctl, listening on a
// free TCP port of 127.0.0.1 (Unix sockets are not available to every
// client on Windows). A port taken between choosing and binding it is
// retried with another.
func launch(ctx context.Context, bin, dir string, _ *account) (*postmaster, string, error) {
	p := &postmaster{pgCtl: filepath.Join(bin, "pg_ctl.exe"), data: filepath.Join(dir, "data")}
	logPath := filepath.Join(dir, "server.log")
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, "", err
		}
		if err = appendSettings(p.data, map[string]string{
			"listen_addresses": "127.0.0.1", "port": strconv.Itoa(port),
		}); err != nil {
			return nil, "", err
		}
		if err = p.run(ctx, dir, "start", "-D", p.data, "-l", logPath, "-w", "-t", "60", "-s"); err == nil {
			u := &url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				Path: "/postgres", RawQuery: "sslmode=disable"}
			return p, u.String(), nil
		}
		log, _ := os.ReadFile(logPath)
		err = fmt.Errorf("pgtest: start postgres: %w\n%s", err, log)
		if !strings.Contains(string(log), "could not bind") {
			break
		}
	}
	// A server pg_ctl gave up waiting for may still be starting.
	_ = p.run(context.Background(), dir, "stop", "-D", p.data, "-m", "immediate", "-s")
	return nil, "", err
}

// run runs pg_ctl with args. Its output goes to a file, not a pipe: the
// server pg_ctl starts inherits the handles, and a pipe would stay open as
// long as the server runs.
func (p *postmaster) run(ctx context.Context, dir string, args ...string) error {
	out, err := os.OpenFile(filepath.Join(dir, "pg_ctl.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, p.pgCtl, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(string(msg)))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// exited never fires: pg_ctl start -w has already seen the server ready.
func (*postmaster) exited() <-chan struct{} { return nil }

// stop asks pg_ctl for a fast shutdown and waits up to 30 seconds for it;
// then it tries an immediate shutdown.
func (p *postmaster) stop() error {
	dir := filepath.Dir(p.data)
	err := p.run(context.Background(), dir, "stop", "-D", p.data, "-m", "fast", "-w", "-t", "30", "-s")
	if err == nil {
		return nil
	}
	if p.run(context.Background(), dir, "stop", "-D", p.data, "-m", "immediate", "-w", "-t", "30", "-s") == nil {
		return errors.Join(errStopTimeout, err)
	}
	return fmt.Errorf("pgtest: stop postgres: %w", err)
}

// processQueryLimitedInformation is PROCESS_QUERY_LIMITED_INFORMATION, which
// syscall does not define; it is granted for other users' processes too.
const processQueryLimitedInformation = 0x1000

// stillActive is the exit code GetExitCodeProcess reports for a running process.
const stillActive = 259

// processAlive reports whether a process with this id is running.
func processAlive(pid int) bool {
	h, err := syscall.OpenProcess(processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return errors.Is(err, syscall.ERROR_ACCESS_DENIED)
	}
	defer syscall.CloseHandle(h)
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil {
		return true
	}
	return code == stillActive
}

// stopLeftover asks pg_ctl for an immediate shutdown of the leftover server
// in data (it signals postgres through a channel only postgres opens).
func stopLeftover(bin, data string, _ int) error {
	p := &postmaster{pgCtl: filepath.Join(bin, "pg_ctl.exe"), data: data}
	return p.run(context.Background(), filepath.Dir(data), "stop", "-D", data, "-m", "immediate", "-s")
}
