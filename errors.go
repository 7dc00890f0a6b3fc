package mire

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mire-go/mire/internal/pgerr"
)

// Sentinel errors. Test for them with errors.Is; the typed errors below wrap
// them where they carry more detail.
var (
	// ErrNotFound is returned when a stream (or another stored object) does not exist.
	ErrNotFound = errors.New("mire: not found")
	// ErrConcurrency is returned when another writer changed a stream after it
	// was read. *ConcurrencyError wraps it with the versions involved.
	ErrConcurrency = errors.New("mire: concurrency conflict")
	// ErrCorruptStream is returned when a stream's stored versions do not run
	// 1..n without a gap, or do not end at the version of the stream's row
	// (events deleted by hand, say).
	ErrCorruptStream = errors.New("mire: corrupt stream")
	// ErrClosed is returned by every call on a Store after Close.
	ErrClosed = errors.New("mire: store is closed")
	// ErrInvalidID is returned for an empty, over-long or malformed id.
	ErrInvalidID = errors.New("mire: invalid id")
	// ErrInvalidEvent is returned for a nil event, an event of another entity
	// than its stream, or a value that is not a registered event struct.
	ErrInvalidEvent = errors.New("mire: invalid event")
	// ErrUnregistered is returned when an event type is not in the registry,
	// on write (Go type) or on read (stored entity and type).
	ErrUnregistered = errors.New("mire: event type not registered")
	// ErrDecode is returned when stored event data cannot be decoded.
	// *DecodeError wraps it with the stream, position and type.
	ErrDecode = errors.New("mire: cannot decode stored event")
	// ErrLockTimeout is returned when a locking load waited longer than the
	// scope's lock timeout.
	ErrLockTimeout = errors.New("mire: lock timeout")
	// ErrSerialization is returned when Postgres aborted a transaction because
	// of a deadlock or a serialization failure; retrying it may succeed.
	ErrSerialization = errors.New("mire: serialization failure")
	// ErrTxDone is returned by a TxScope used after Commit or Rollback.
	ErrTxDone = errors.New("mire: transaction scope already committed or rolled back")
	// ErrNotMigrated is returned when the store's schema or its tables do
	// not exist: call Store.Migrate (or run `mire migrate`) first.
	ErrNotMigrated = errors.New("mire: schema not migrated (call Store.Migrate)")
)

// ConcurrencyError reports an optimistic concurrency conflict on one stream.
// errors.Is(err, ErrConcurrency) is true for it.
type ConcurrencyError struct {
	StreamID string
	Expected ExpectedVersion // the version the writer expected, or Any, NoStream, StreamExists
	Actual   int64           // the stream's version when the write was refused; 0 if it does not exist or could not be read
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("mire: concurrency conflict on stream %q: expected version %s, actual %d",
		e.StreamID, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrency }

// ValidationError reports an event whose payload failed its `validate` tags.
// Nothing is recorded or written when it is returned. errors.Is(err,
// ErrInvalidEvent) is true for it.
type ValidationError struct {
	Type   reflect.Type // the Go type of the event
	Fields []FieldError // one per failing field, in struct order
	Err    error        // the validator's own error
}

// FieldError is one failing field of a ValidationError.
type FieldError struct {
	Path  string // the field path, e.g. "Transfer.Amount"
	Tag   string // the failing validation tag, e.g. "gte"
	Param string // the tag's parameter, e.g. "0"
	Value any    // the offending value
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s event", e.Type)
	for i, f := range e.Fields {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		rule := f.Tag
		if f.Param != "" {
			rule += "=" + f.Param
		}
		fmt.Fprintf(&b, "%sfield %s = %v fails %q", sep, f.Path, f.Value, rule)
	}
	if len(e.Fields) == 0 && e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns ErrInvalidEvent and the validator's error.
func (e *ValidationError) Unwrap() []error { return []error{ErrInvalidEvent, e.Err} }

// RegistrationError reports an event type that cannot be registered: a bad
// tag, a duplicate (entity, type), a type that is not a struct.
type RegistrationError struct {
	Type   reflect.Type
	Reason string
}

func (e *RegistrationError) Error() string {
	return fmt.Sprintf("mire: cannot register %v: %s", e.Type, e.Reason)
}

// DecodeError reports a stored event that cannot be turned into its Go type:
// an unregistered (entity, type), a missing upcaster step, an upcaster's
// error, or data that does not fit the struct. errors.Is(err, ErrDecode) is
// true for it, and so is errors.Is(err, cause) for an upcaster's own error.
type DecodeError struct {
	StreamID      string
	Position      int64  // the event's global position
	Version       int64  // the event's version in its stream
	Type          string // the stored type (or alias)
	SchemaVersion int    // the payload's schema version as stored
	TargetVersion int    // the registered type's current version; 0 if unregistered
	Err           error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("mire: cannot decode event at position %d (stream %q version %d, type %q, stored schema version %d, target version %d): %v",
		e.Position, e.StreamID, e.Version, e.Type, e.SchemaVersion, e.TargetVersion, e.Err)
}

// Unwrap returns ErrDecode and the underlying cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }

// translate turns driver errors into mire's errors. It is the one place pgx
// error types are inspected; everything else wraps what it returns. A
// statement the server cancelled because ctx ended (see ConfigurePool)
// reports ctx's error.
func translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if errors.Is(err, pgx.ErrTxClosed) {
		return ErrTxDone
	}
	if pgerr.NotMigrated(err) {
		return fmt.Errorf("%w: %v", ErrNotMigrated, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgerr.UniqueViolation:
			if strings.Contains(pgErr.ConstraintName, "stream_id_version") {
				return fmt.Errorf("%w: %s", ErrConcurrency, pgErr.Message)
			}
		case pgerr.SerializationFail, pgerr.DeadlockDetected:
			return fmt.Errorf("%w: %s", ErrSerialization, pgErr.Message)
		case pgerr.LockNotAvailable:
			return fmt.Errorf("%w: %s", ErrLockTimeout, pgErr.Message)
		case pgerr.QueryCanceled:
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %s", ctx.Err(), pgErr.Message)
			}
		}
	}
	return err
}

// isUniqueViolation reports whether err is a unique violation on a constraint
// whose name contains part.
func isUniqueViolation(err error, part string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerr.UniqueViolation && strings.Contains(pgErr.ConstraintName, part)
}

// isStrictRefusal reports whether err is a strict append statement's
// refusal (see appendStrictTotals).
func isStrictRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerr.InvalidTextRepresentation && strings.Contains(pgErr.Message, appendRefused)
}

// checkContext returns a wrapped context error if ctx is already done, so a
// cancelled call fails before it touches the database.
func checkContext(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mire: %s: %w", op, err)
	}
	return nil
}
