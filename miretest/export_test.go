package miretest

// ServerRunning reports whether this process holds a throwaway server it
// started (and would stop).
func ServerRunning() bool {
	server.mu.Lock()
	defer server.mu.Unlock()
	return server.srv != nil
}

// ServerURL returns the URL of the server Store uses, "" if none.
func ServerURL() string {
	server.mu.Lock()
	defer server.mu.Unlock()
	return server.url
}

// RunMain is Main without the exit.
func RunMain(m interface{ Run() int }) int { return run(m) }
