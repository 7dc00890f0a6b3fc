// Package natstest gives tests and examples a NATS server with JetStream:
// an embedded one, in-process, with file storage in a temporary directory,
// or the one the environment variable NATS_URL names.
//
//	srv, err := natstest.Start()
//	defer srv.Stop()
//	nc, err := nats.Connect(srv.URL())
package natstest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EnvURL names the variable that points tests and examples at a NATS server
// of one's own (with JetStream enabled) instead of an embedded one.
const EnvURL = "NATS_URL"

// Server is an embedded NATS server with JetStream, or the server EnvURL
// names.
type Server struct {
	mu   sync.Mutex
	url  string
	opts *server.Options
	srv  *server.Server // nil when stopped, or when EnvURL names the server
	dir  string
}

// Start starts an embedded NATS server with JetStream on a free port of
// 127.0.0.1, storing its streams in a new temporary directory, or, when
// EnvURL is set, returns a Server for that URL (whose Stop and Restart do
// nothing).
func Start() (*Server, error) {
	if url := os.Getenv(EnvURL); url != "" {
		return &Server{url: url}, nil
	}
	dir, err := os.MkdirTemp("", "natstest-")
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("natstest: find a free port: %w", err)
	}
	s := &Server{dir: dir, opts: &server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, MaxPayload: 8 << 20,
	}}
	if err := s.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.url = "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(port))
	return s, nil
}

func (s *Server) start() error {
	srv, err := server.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("natstest: new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("natstest: server not ready after 30s")
	}
	s.srv = srv
	return nil
}

// URL returns the server's client URL.
func (s *Server) URL() string { return s.url }

// Embedded reports whether the server runs in this process (EnvURL unset).
func (s *Server) Embedded() bool { return s.opts != nil }

// Shutdown stops an embedded server, keeping its port and its stored
// streams for Restart: a broker outage. It does nothing for a server
// EnvURL names.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart starts an embedded server stopped by Shutdown again, on the same
// port with the same streams.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts == nil || s.srv != nil {
		return nil
	}
	return s.start()
}

// Stop shuts an embedded server down for good and removes its storage.
func (s *Server) Stop() {
	s.Shutdown()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
