// Package mire is a small, generic PostgreSQL event store: events are plain
// Go structs, aggregates are rebuilt from their streams, saves use
// optimistic concurrency, and Postgres is the only server it needs.
//
// # Events
//
// An event is a struct embedding [Event], whose `mire` tag gives its stored
// name. The type discriminator comes only from the tag, so renaming the Go
// type never orphans history. Register event types once, at init:
//
//	type Opened struct {
//	    mire.Event `mire:"entity=account,type=Opened"`
//	    Initial    int64 `json:"initial" validate:"gte=0"`
//	}
//
//	func init() { mire.MustRegister(Opened{}, Debited{}, Credited{}) }
//
// Payloads are stored as JSONB and validated with their `validate` tags
// (go-playground/validator) before anything is written. Older payload
// versions are upcast with [Registry.RegisterUpcaster].
//
// # Aggregates
//
// An aggregate's pointer type implements [Aggregate]. [Load] and [LoadOrNew]
// rebuild it into a [Root]; [Root.Record] validates and applies new events;
// [Store.Save] writes them in one statement, refusing with a
// [*ConcurrencyError] if another writer got there first:
//
//	acc, err := mire.LoadOrNew[Account](ctx, store, "alice")
//	err = acc.Record(Debited{Amount: 30})
//	err = store.Save(ctx, acc)
//	if errors.Is(err, mire.ErrConcurrency) { /* reload and decide again */ }
//
// [Create] gives a new Root without a read, for a command that creates the
// aggregate; its first save refuses a stream that already exists.
//
// # Lower-level writes and reads
//
// [Store.Append] writes events to a stream with an [ExpectedVersion] (Any,
// NoStream, StreamExists, [Exactly]). Every write has a twin that runs in
// the caller's pgx.Tx ([Store.SaveTx], [Store.AppendTx]), so events commit
// with the caller's own rows. [Store.ReadStream], [Store.ReadCategory] and
// [Store.ReadAll] are range-over-func iterators of [Envelope] that fetch in
// batches. [WithMetadata] attaches correlation, causation, actor and
// key/values to every event saved with a context.
//
// # Decisions that span aggregates
//
// [Store.Begin] opens a [TxScope]: [LoadForUpdate] and [LoadManyForUpdate]
// row-lock streams (in a stable order, so opposite transfers cannot
// deadlock) and [TxScope.Save] saves several roots atomically.
// [Store.InTx] commits on nil and rolls back on error or panic, retrying
// conflicts with [InTxOpts]. [Store.ScopeTx] gives a scope inside the
// caller's own pgx.Tx. See examples/bank.
//
// # Connection pools
//
// Use [ConfigurePool] on the pgxpool config so a cancelled context cancels
// its statement on the server, and a connection a cancel request may still
// reach is closed rather than reused.
//
// # Read replicas
//
// [Config].Replica, a pool on a streaming replica of the primary, takes the
// store's loads and reads; writes, a [TxScope] and projections stay on the
// primary, as does a call in a [WithPrimary] context. [Store.Token] after a
// save, passed to a later load with [WithToken] (as a string in between:
// [Token.String], [ParseToken]), makes the load wait for the replica to
// replay the save, or read from the primary. A replica down or lagging
// sends loads to the primary, never an error; a Root loaded from a lagging
// replica saves as a [*ConcurrencyError], and [Update] runs the
// load-decide-save loop that reloads from the primary after one. See
// examples/replica.
//
// # Snapshots and schema evolution
//
// An aggregate whose pointer type implements [Snapshotter] has its State
// stored every [SnapshotPolicy].Every events, in the save's round trip;
// loads start from it. Payloads written under older `version=N` tags are
// upcast through [RegisterUpcaster] steps and decoded with json.Unmarshal;
// [RegisterAlias] (or the tag's alias key) loads history written under an
// old type name; [Registry.Check] reports unfinished upcaster chains.
//
// # Projections
//
// Package projections builds read models from the log, gap-safe and in
// per-stream order, with leases and fence tokens across replicas. Writes
// wake its runners through coalesced LISTEN/NOTIFY ([Store.Notify] after a
// transaction of your own that used SaveTx or AppendTx).
//
// # Outbox
//
// [Store.EnqueueTx] records [Message] values (id, subject, key, headers,
// payload) in the caller's transaction, so a message is recorded exactly
// once with the change that caused it; [Store.Enqueue] records them in a
// transaction of its own. They are stored in the log itself, as events of
// type [MessageType] in streams "outbox-key" (the outbox's name is the
// category; see [EnqueueOpts]), so a relay reads them as a projection
// does: gap-safe, in order per key, with one active relay per outbox. The
// relay to NATS JetStream is the module github.com/mire-go/mire/jetstream;
// the core pulls no broker code. Reads and projections over every category
// see messages too, with a Message as Envelope.Data. [Registry.Decode]
// decodes events received from elsewhere than the store (a broker).
//
// # Telemetry
//
// The store traces and counts its work through the OpenTelemetry API (never
// the SDK): spans mire.save, mire.append, mire.load and mire.tx (a
// TxScope from Begin to Commit or Rollback), with the database client
// conventions (db.system.name, db.namespace, db.operation.name) and
// mire.stream, mire.events and the versions; metrics mire.saves,
// mire.save.duration, mire.events.written, mire.loads, mire.load.duration,
// mire.events.replayed and mire.replica.fallbacks. The providers are [Config].TracerProvider and
// MeterProvider, or the otel globals as [New] finds them; with none set
// the cost is a nil check. Each event's [Metadata] carries the W3C trace
// context of the span that wrote it ([Metadata.SpanContext]), which
// projections link their handler spans to. Log lines of the store carry
// trace_id and span_id when a span is active. See the tracing example of
// [Config] and examples/telemetry.
//
// # Schema
//
// [Store.Migrate] applies the embedded migrations of package pgschema; it is
// safe to call from every replica at boot. Package pgtest starts a throwaway
// PostgreSQL for tests and examples.
package mire
