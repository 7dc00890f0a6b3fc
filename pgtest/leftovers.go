package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ownerFile, in a server's directory, holds the id of the process that
// started the server and owns the directory.
const ownerFile = "owner.pid"

func writeOwner(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("pgtest: record the owner of %s: %w", dir, err)
	}
	return nil
}

// removeLeftovers stops the servers of throwaway directories in roots whose
// owner process is gone, and removes those directories. It is best effort:
// a directory it cannot judge (no owner file, as a server starting right now
// may not have written yet) or clean is left alone.
func removeLeftovers(ctx context.Context, bin string, roots ...string) {
	seen := map[string]bool{}
	for _, root := range roots {
		dirs, _ := filepath.Glob(filepath.Join(root, dirPrefix+"*"))
		for _, dir := range dirs {
			if seen[dir] {
				continue
			}
			seen[dir] = true
			b, err := os.ReadFile(filepath.Join(dir, ownerFile))
			if err != nil {
				continue
			}
			owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || owner == os.Getpid() || processAlive(owner) {
				continue
			}
			stopOrphan(ctx, bin, filepath.Join(dir, "data"))
			_ = os.RemoveAll(dir) // once: what is left is tried again on the next start
		}
	}
}

// stopOrphan stops the server still running in data, if any, and waits up
// to 30 seconds for it to go. It signals the process postmaster.pid names
// only after the server listening where that file says has answered with
// the same data directory, so a process id reused by an unrelated program
// is never signalled. A server it could not stop notices within a minute
// that its lock file is gone, once the directory is removed, and shuts down.
func stopOrphan(ctx context.Context, bin, data string) {
	pf, err := readPostmasterPID(data)
	if err != nil || !processAlive(pf.pid) || !pf.answers(ctx) {
		return
	}
	if stopLeftover(bin, data, pf.pid) != nil {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pf.pid) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// postmasterPID is what a running server writes to data/postmaster.pid.
type postmasterPID struct {
	pid       int
	data      string // the data directory, as the server names it
	port      string
	socketDir string // "" without Unix sockets
	listen    string // the first listen address; "" for none
}

func readPostmasterPID(data string) (postmasterPID, error) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return postmasterPID{}, err
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	if len(lines) < 6 {
		return postmasterPID{}, fmt.Errorf("pgtest: short postmaster.pid in %s", data)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return postmasterPID{}, fmt.Errorf("pgtest: postmaster.pid in %s: %w", data, err)
	}
	return postmasterPID{pid: pid, data: lines[1], port: strings.TrimSpace(lines[3]),
		socketDir: strings.TrimSpace(lines[4]), listen: strings.TrimSpace(lines[5])}, nil
}

// answers reports whether the server the file describes accepts a
// connection and runs on the file's data directory.
func (pf postmasterPID) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := &url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres"}
	q := url.Values{"sslmode": {"disable"}}
	if pf.socketDir != "" && runtime.GOOS != "windows" {
		q.Set("host", pf.socketDir)
		q.Set("port", pf.port)
	} else {
		host := pf.listen
		if host == "" || host == "*" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		u.Host = net.JoinHostPort(host, pf.port)
	}
	u.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dataDir string
	if err := conn.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
		return false
	}
	return dataDir == pf.data
}
