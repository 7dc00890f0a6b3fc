// Package projections turns mire's event log into read models and side
// effects, safely, while several replicas of an application run at once.
//
// # Projections and handlers
//
// A [Projection] has a name (its checkpoint and lease), optional
// categories, a batch size and a [Handler]. Handlers receive each event's
// [mire.Envelope] and the pgx.Tx in which the projection's checkpoint is
// written after the batch. [On] routes by Go type:
//
//	balances := projections.Projection{
//		Name:       "balances",
//		Categories: []string{"account"},
//		Handler: projections.Routes(
//			projections.On(func(ctx context.Context, tx pgx.Tx, e Opened, env mire.Envelope) error {
//				_, err := tx.Exec(ctx, `INSERT INTO balances (id, balance) VALUES ($1, 0)`, env.StreamID)
//				return err
//			}),
//			projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
//				_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE id = $1`, env.StreamID, e.Amount)
//				return err
//			}),
//		),
//	}
//	runner, err := projections.NewRunner(store, nil, balances)
//	go runner.Run(ctx)      // in every replica
//	...
//	err = runner.Stop(ctx)  // at shutdown, before the pool is closed
//
// A route that could never fire is refused where it is built: [On] panics
// for a pointer type, and [NewRunner] and [Inline] return an error naming
// a Go type the store's registry does not hold (or one outside the
// projection's categories), instead of checkpointing past its events.
//
// # Guarantees
//
//   - No event is skipped. Positions come from a sequence, so they commit
//     out of order; the reader pages by (writing transaction's xid8,
//     position) and reads only rows of transactions older than the oldest
//     one still running (pg_snapshot_xmin), so no later commit can land
//     behind its cursor. Only each append's first row is indexed for this
//     (so a 100-event save costs writers one index entry per subscriber
//     index, not 100); the reader joins the rest of an append through the
//     (stream, version) key, and resumes inside an append when a batch
//     ends there.
//   - Each stream's events reach the handler in version order, also when a
//     transaction that got its id early appends to a stream after a later
//     transaction committed to it. Every event row records the transaction
//     of its stream's previous append; an event whose predecessor's
//     transaction sorts after it is held back until that predecessor is
//     delivered. The held-back set is stored with the checkpoint, so the
//     order holds across batches (of any size, 1 included), restarts and
//     takeovers. Writers take no extra lock for it. Events of different
//     streams are delivered in (transaction, position) order, which is not
//     the global position order.
//   - One active worker per projection (per partition: see Partitions)
//     across all replicas: a lease (owner,
//     expiry on the database's clock) and a fence token that grows with
//     every takeover. The checkpoint is written only WHERE fence = the
//     worker's token, in the handler's transaction: a worker that lost its
//     lease (paused past LeaseTTL, partitioned) cannot advance the
//     checkpoint, and its transactional writes roll back. A replica that
//     dies is replaced within LeaseTTL + RecheckInterval; one that stops
//     cleanly ([Runner.Stop]) releases its leases at once, and one
//     restarted under the same Config.Owner takes its own lease back at
//     once (raising the fence).
//   - Exactly once, for what a handler writes through tx: read-model rows
//     and the checkpoint commit together, or neither does. Anything else a
//     handler does (messages, HTTP calls, writes through another
//     connection) is at least once: after a crash between the handler and
//     the checkpoint, a failed batch, or a takeover, the events of the
//     batch are delivered again. [Plain] handlers say so in their type.
//   - A failing handler is retried with jittered, doubling backoff (one
//     event per batch while it fails); after Config.MaxAttempts the
//     projection halts, with the error and the event in its [Status],
//     while the runner's other projections go on. [Resume] restarts it
//     from that event after a fix. A payload that cannot be decoded is a
//     failing event too: nothing is ever skipped silently.
//
// # Partitions
//
// One worker per projection is the ceiling of its catch-up speed, whatever
// the number of replicas. A projection with Partitions: N is split by
// stream into N partitions, each with its own checkpoint, lease and fence,
// and the runners hosting it share them:
//
//	orders := projections.Projection{Name: "orders", Partitions: 16, Handler: h}
//	err := projections.MigratePartitions(ctx, store, 16) // once, at boot
//	runner, err := projections.NewRunner(store, &projections.Config{Owner: podName}, orders)
//	go runner.Run(ctx) // in every replica
//
// How it works, and what holds:
//
//   - A stream belongs to partition (hashtext(stream_id) & 2147483647) % N,
//     computed by PostgreSQL: the same in every replica and across
//     restarts. Each partition keeps every guarantee above (per-stream
//     order with early transactions, exactly once through tx, one active
//     worker, fencing); what is given up is the (transaction, position)
//     order across streams of different partitions.
//   - Every runner that hosts the projection heartbeats a membership row
//     (every RecheckInterval, alive for LeaseTTL). With the live members
//     sorted by Owner, member i's share is the partitions p with p %
//     members == i: with R replicas each holds N/R, rounded. A holder gives
//     a partition up between batches, never in the middle of one; a
//     joining runner announces itself (NOTIFY), so the others release
//     their extra partitions after their batch in flight, and the
//     newcomer takes them when they are free. A runner that stops cleanly
//     releases its leases and leaves at once; one that dies loses its share
//     when its membership and leases lapse: within LeaseTTL plus one
//     RecheckInterval.
//   - Each partition halts on its own: the others go on. [StatusOf] rolls
//     the partitions up and lists each in [Status].ByPartition; [Resume],
//     [ResetCheckpoint], [MoveToWatermark] and [Runner.Rebuild] act on all
//     partitions in one transaction.
//   - The count is part of the projection's stored state: a runner that
//     declares another count than the stored one is refused
//     ([ErrPartitionCount]) at Run or CatchUp, before it handles anything,
//     and [Runner.Rebuild] in a runner that declares the new count starts
//     the projection over with it (clearing the read model through
//     Truncate). Runners still running the old count then stop with
//     ErrPartitionCount: a projection's events are never split two ways.
//   - Each partition's reader walks an expression index of its own
//     partition's appends ([MigratePartitions] builds it, concurrently,
//     one per partition count in use), so it reads its 1/N of the log, not
//     the whole log. It costs writers one more index entry per append (not
//     per event). Categories are filtered on the rows of that index.
//
// How many partitions: enough for the most replicas you will run, times
// the batches each replica can run at once (a transactional handler holds
// one of the pool's connections for its batch, so a replica's pool bounds
// it); a few more than that gives an even spread as replicas come and go.
// Partitions that hold no lease cost nothing; each held one costs an idle
// poll every PollInterval. Partition when handlers do real work (an
// external call, a heavy upsert); a no-op or cheap handler is bound by
// PostgreSQL, and more workers mostly add load.
//
// # Wake-ups
//
// After each commit of Store.Save, Store.Append or TxScope.Commit the store
// sends a NOTIFY, coalesced to at most one per [mire.NotifyWindow] per
// Store and sent from a background goroutine after the commit, never inside
// the writing transaction (a NOTIFY there serialises every committing
// writer). Runners LISTEN and wake at once, and poll every
// Config.PollInterval as a backstop (for events written with SaveTx and
// AppendTx, which cannot know when their transaction commits, unless the
// caller calls Store.Notify after committing).
//
// # Inline projections
//
// [Inline] runs a handler inside every transaction that appends events,
// so a read model is current as soon as a save
// returns. It has no checkpoint, lease or retries; a handler error fails
// the save. Each write pays a round trip to read its events back.
//
// # Operations
//
// [StatusOf] (and [Runner.Status]) report position, lag in events, held
// events, owner, fence, state and the last error with its event.
// [Runner.Rebuild] clears a projection's read model (Projection.Truncate)
// and moves its checkpoint back to the beginning of the log in one
// transaction, then reports progress until the replay has caught up (or,
// with [RebuildOpts].NoWait, returns at once); [ResetCheckpoint] moves
// only the checkpoint, keeping the read model. Both are safe while a
// runner is in the middle of a batch. [Runner.CatchUp] drives a runner's projections to the end of the
// log in the calling goroutine and returns, for tools, tests and
// benchmarks.
//
// [Runner.Stop] is the clean shutdown: it ends Run, releases the leases
// and returns when Run has returned; call it before closing the pool,
// which releasing needs. Config.OnHalt tells the application that a
// projection has halted (to alert, or to exit), also when a restarted
// runner finds it halted. Admin calls on a name that has no checkpoint
// return an error wrapping [mire.ErrNotFound]; every entry point on a
// schema that was never migrated returns one wrapping
// [mire.ErrNotMigrated].
//
// A runner traces each batch that delivers events (mire.projection.batch)
// and each handler call (mire.projection.handle, a consumer span linked
// to the span that wrote its event, from the event's metadata), and
// records mire.projection.batch.duration, mire.projection.events,
// mire.projection.handler.errors, mire.projection.halts and, while it
// runs, the gauges mire.projection.lag.events and
// mire.projection.lag.seconds, through Config.TracerProvider and
// MeterProvider (the store's unless set).
//
// # Limits
//
//   - A long-running write transaction delays every projection: nothing
//     written by a transaction that started after it is read until it ends
//     (read-only transactions do not count; they take no transaction id).
//     Transactional projections' batches are write transactions too: keep
//     batches short, or one slow read model delays the others.
//   - A logical dump and restore into another cluster restarts transaction
//     ids, so restored events no longer sort before new ones. After a
//     restore, call [MoveToWatermark] for each projection before writers
//     start: it moves the checkpoint past everything stored, keeping the
//     restored read models. A physical replica or a pg_upgrade keeps xids
//     and needs nothing.
//   - A batch must finish within LeaseTTL: its checkpoint renews the lease.
//   - Exactly once does not extend beyond the database of the checkpoint.
package projections
