// Package pgtest gives tests, examples and local work a real, throwaway
// PostgreSQL server, and fresh databases with mire's schema already in them.
//
// # A server
//
// [Start] uses the server an environment variable names (TEST_DATABASE_URL
// in tests, DATABASE_URL in examples) and otherwise starts one: it finds the
// server binaries ([FindBinaries] says where it looks on Linux, macOS and
// Windows), runs initdb in a temporary directory, and starts postgres with
// durability off, on a private Unix socket (on Windows, a free TCP port of
// 127.0.0.1). It runs the server as the current user; as root on Linux, as
// an unprivileged one. [Server.Stop] removes everything.
//
//	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
//	defer srv.Stop()
//
// A test process killed before Stop leaves its directory behind, and on
// macOS and Windows its server too; the next [StartThrowaway] on the machine
// stops and removes what such processes left.
//
// # A database
//
// [NewDatabase] clones a migrated template, so each test process or spec can
// have its own database, for about a tenth of a second (PostgreSQL copying
// the template) and some 10-20 ms to drop it:
//
//	url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
//	defer drop(ctx)
//
// [ForExample] does both for a runnable program.
//
// # A replica
//
// [StartReplica] copies a throwaway server with pg_basebackup -R and starts
// a streaming replica (a hot standby) of it, asynchronous or synchronous;
// [Server.CatchUp] waits until it has replayed what the primary wrote,
// [Server.PauseReplay] makes it lag on demand, and [Server.DatabaseURL]
// names a database of the primary on it:
//
//	replica, err := pgtest.StartReplica(ctx, primary, nil)
//	defer replica.Stop() // before primary.Stop
//	replicaURL, err := replica.DatabaseURL(primaryDBURL)
package pgtest
