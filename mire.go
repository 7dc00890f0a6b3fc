package mire

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/internal/telemetry"
	"github.com/mire-go/mire/pgschema"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// SchemaDefault is the Postgres schema mire uses unless Config.Schema names
// another.
const SchemaDefault = pgschema.SchemaDefault

// MaxIDLength is the longest aggregate id or stream id accepted, in bytes.
const MaxIDLength = 256

// Config configures a Store. A nil *Config means all defaults.
type Config struct {
	// Schema is the Postgres schema holding mire's tables: at most
	// pgschema.MaxSchemaLength bytes of valid UTF-8 (see
	// pgschema.ValidateSchema), which New checks. Defaults to
	// SchemaDefault ("mire").
	Schema string
	// Registry maps event types to their stored names. Defaults to
	// DefaultRegistry().
	Registry *Registry
	// Logger receives warnings the store handles itself (a snapshot that
	// could not be encoded, say). A record logged while a span is active
	// carries its trace_id and span_id. Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider creates the tracer of the store's spans (mire.save,
	// mire.append, mire.load, mire.tx), under the instrumentation scope
	// InstrumentationName. Defaults to otel.GetTracerProvider(), read once
	// by New: set the global provider before New, or pass it here. With no
	// provider set (or a no-op one) the store records nothing and costs
	// one nil check per call.
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meter of the store's instruments
	// (mire.saves, mire.save.duration, mire.events.written, mire.loads,
	// mire.load.duration, mire.events.replayed, mire.replica.fallbacks).
	// Defaults to otel.GetMeterProvider(), read once by New, as
	// TracerProvider is.
	MeterProvider metric.MeterProvider

	// Replica is a pool on a streaming replica (a hot standby) of the
	// primary, the database of the pool New takes. Load, LoadOrNew,
	// ReadStream, ReadCategory and ReadAll on the store read from it;
	// saves, appends, everything in a TxScope (its loads and reads too),
	// Token, Migrate and projections use the primary, and so does a load or
	// read in a WithPrimary context. A load or read given a Token
	// (WithToken) waits for the replica to replay past it, at most
	// ReplicaWait; a replica that is down, lagging by more than ReplicaWait
	// or failing a query sends loads and reads to the primary, counted in
	// mire.replica.fallbacks and logged, never as an error. A Root loaded
	// from a lagging replica is at an older version, and saving it is a
	// *ConcurrencyError, never a lost update: reload from the primary and
	// decide again, as Update does. The pool stays the caller's. Defaults
	// to nil: everything uses the primary.
	Replica *pgxpool.Pool
	// ReplicaWait bounds how long a load or read given a Token waits for
	// the replica to replay past it before it reads from the primary (it
	// does not wait on a replica whose replay is paused). A replica that
	// does not replay the primary's latest position within it is lagging:
	// loads and reads without a token go to the primary, and those with
	// one use the replica only if it has replayed their token already,
	// until a later check finds it current. Defaults to
	// ReplicaWaitDefault (100 ms).
	ReplicaWait time.Duration
	// ReplicaCheckInterval is how often the store checks, in the
	// background while loads and reads run, that the replica answers and
	// replays the primary's latest position within ReplicaWait. While it
	// is down or lagging, checks run ten times as often, and a failed
	// query on it, or a load whose token it has replayed, starts one at
	// once. Defaults to ReplicaCheckIntervalDefault (1 s).
	ReplicaCheckInterval time.Duration
}

// Store is an event store on one PostgreSQL database. It is safe for
// concurrent use; create one per database and share it.
type Store struct {
	pool     *pgxpool.Pool
	schema   string
	registry *Registry
	logger   *slog.Logger
	sql      queries
	closed   atomic.Bool
	notify   notifier          // wakes projection runners after commits (notify.go)
	inline   inlineProjections // run in every appending transaction (inline.go)
	tel      *storeTelemetry   // spans and metrics (telemetry.go)
	replica  *replica          // Config.Replica and its health (replica.go); nil without one
}

// New returns a Store using pool. The pool stays the caller's: Close does
// not close it. New does not touch the database; call Migrate once at boot.
func New(pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	if pool == nil {
		return nil, fmt.Errorf("mire: New: pool is nil")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	s := &Store{
		pool:     pool,
		schema:   cmp.Or(cfg.Schema, SchemaDefault),
		registry: cmp.Or(cfg.Registry, defaultRegistry),
		logger:   telemetry.WrapLogger(cmp.Or(cfg.Logger, slog.Default())),
	}
	if err := pgschema.ValidateSchema(s.schema); err != nil {
		return nil, fmt.Errorf("mire: New: %w", err)
	}
	if err := validateReplica(cfg); err != nil {
		return nil, fmt.Errorf("mire: New: %w", err)
	}
	if cfg.Replica != nil {
		s.replica = newReplica(cfg.Replica, cmp.Or(cfg.ReplicaWait, ReplicaWaitDefault),
			cmp.Or(cfg.ReplicaCheckInterval, ReplicaCheckIntervalDefault))
	}
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	var err error
	if s.tel, err = newStoreTelemetry(tp, mp, pool.Config().ConnConfig.Database, s.schema); err != nil {
		return nil, fmt.Errorf("mire: New: create instruments: %w", err)
	}
	s.sql = newQueries(s.schema)
	return s, nil
}

// Migrate brings the store's schema up to date. It is safe to call from
// many processes at once, and cheap (one query) when nothing is to be done.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.check(ctx, "migrate"); err != nil {
		return err
	}
	return pgschema.Migrate(ctx, s.pool, s.schema)
}

// Close marks the store closed: later calls return ErrClosed. It does not
// close the pool. Calling it again is a no-op.
func (s *Store) Close() { s.closed.Store(true) }

// Pool returns the pool the store was created with, for code that opens
// its own transactions beside the store (pgx.BeginFunc, then ScopeTx,
// SaveTx or AppendTx inside it) where only the store was passed around.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the Postgres schema holding the store's tables.
func (s *Store) Schema() string { return s.schema }

// Registry returns the store's event registry.
func (s *Store) Registry() *Registry { return s.registry }

// check rejects calls on a closed store or with a finished context.
func (s *Store) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("mire: %s: %w", op, ErrClosed)
	}
	return checkContext(ctx, op)
}

// dbtx is what mire needs from a pool, a connection or a transaction.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// validateID checks an aggregate id: not empty, at most MaxIDLength bytes,
// valid UTF-8 without control characters.
func validateID(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidID, kind)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%w: %s %.40q... is %d bytes, longer than %d", ErrInvalidID, kind, id, len(id), MaxIDLength)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidID, kind, id)
	}
	if i := strings.IndexFunc(id, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%w: %s %q contains control character %U at byte %d", ErrInvalidID, kind, id, []rune(id[i:])[0], i)
	}
	return nil
}

// validateCategory checks a category (an aggregate's, or a stream id's
// prefix) against the entity-name grammar of the tags.
func validateCategory(category string) error {
	if !isEntityName(category) {
		return fmt.Errorf("%w: category %q must match %s", ErrInvalidID, category, entityName)
	}
	return nil
}

// isEntityName reports whether s matches the entityName grammar, by hand:
// every append checks its stream's category, and the regexp cost a save
// more than the rest of the id's checks together.
func isEntityName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// validateStreamID checks a stream id by the one rule that makes every
// stream addressable by Load: "category-id", with a category that matches
// the entity grammar and an id that passes validateID. It returns the
// category.
func validateStreamID(streamID string) (string, error) {
	if streamID == "" {
		return "", fmt.Errorf("%w: stream id is empty", ErrInvalidID)
	}
	category, id, ok := strings.Cut(streamID, "-")
	if !ok {
		return "", fmt.Errorf("%w: stream id %.40q has no \"-\" between category and id", ErrInvalidID, streamID)
	}
	if err := validateCategory(category); err != nil {
		return "", fmt.Errorf("stream id %.40q: %w", streamID, err)
	}
	if err := validateID("aggregate id", id); err != nil {
		return "", fmt.Errorf("stream id %.40q: %w", streamID, err)
	}
	return category, nil
}

// StreamID returns the id of the stream of aggregate id in category:
// "category-id".
func StreamID(category, id string) string { return category + "-" + id }
