// Package pgtest gives tests, examples and local work a real, throwaway
// PostgreSQL server, and fresh databases with mire's schema already in them.
//
// # A server
//
// [Start] uses the server an environment variable names (TEST_DATABASE_URL
// in tests, DATABASE_URL in examples) and otherwise starts one: it finds the
// server binaries, runs initdb in a temporary directory, and starts postgres
// on a private Unix socket with durability off. As root it runs the server as
// an unprivileged user. [Server.Stop] removes everything.
//
//	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
//	defer srv.Stop()
//
// # A database
//
// [NewDatabase] clones a migrated template, so each test process or spec can
// have its own database for a few milliseconds:
//
//	url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
//	defer drop(ctx)
//
// [ForExample] does both for a runnable program.
package pgtest
