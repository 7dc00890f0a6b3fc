//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// postmaster is a throwaway server run as a child of this process.
type postmaster struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited; err is then set
	err  error
}

// launch starts the server in data under dir, listening only on a Unix
// socket in dir, and returns it with its maintenance database's URL.
func launch(_ context.Context, bin, dir string, acct *account) (*postmaster, string, error) {
	if err := appendSettings(filepath.Join(dir, "data"), map[string]string{
		"listen_addresses": "", "unix_socket_directories": dir, "port": "5432",
	}); err != nil {
		return nil, "", err
	}
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, "", fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close() // the server has its own copy of the descriptor
	p := &postmaster{done: make(chan struct{})}
	// Not CommandContext: the server outlives the start call's context.
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"))
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// The server stays in this process's group, so a Ctrl-C in the
	// terminal stops it along with the tests.
	p.cmd.SysProcAttr = acct.postmasterAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	u := &url.URL{Scheme: "postgres", Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "port": {"5432"}, "user": {"postgres"}, "sslmode": {"disable"}}.Encode()}
	return p, u.String(), nil
}

// exited is closed when the server process has exited.
func (p *postmaster) exited() <-chan struct{} { return p.done }

// stop asks for a fast shutdown (SIGINT) and waits for it; a server that
// has not stopped after 30 seconds is killed.
func (p *postmaster) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errStopTimeout
	}
}

// processAlive reports whether a process with this id exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// stopLeftover asks the leftover postmaster pid of data for a fast shutdown.
func stopLeftover(_ string, _ string, pid int) error {
	return syscall.Kill(pid, syscall.SIGINT)
}
