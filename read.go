package mire

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Envelope is a stored event with everything known about it.
type Envelope struct {
	ID            uuid.UUID       // the event's id, given when it was recorded
	StreamID      string          // "category-id"
	Category      string          // the stream's category, the event's entity
	Version       int64           // the event's version in its stream, from 1
	Position      int64           // the event's global position in the log
	Type          string          // the stored type discriminator
	SchemaVersion int             // the payload's schema version as stored
	Data          any             // the decoded event value, at its current version
	Raw           json.RawMessage // the payload as stored
	Metadata      Metadata        // what WithMetadata set when it was written
	RecordedAt    time.Time       // the writing transaction's start time
}

// AggregateID returns the id of the aggregate whose stream holds the event:
// the stream id after "category-", as Load and Root.ID take it.
func (e Envelope) AggregateID() string {
	_, id, _ := strings.Cut(e.StreamID, "-")
	return id
}

// ReadOpts bounds a read. A nil *ReadOpts reads everything.
type ReadOpts struct {
	// After skips events up to and including this version (ReadStream) or
	// global position (ReadCategory, ReadAll). Defaults to 0: from the start.
	After int64
	// Limit stops after this many events. Defaults to 0: no limit.
	Limit int
	// BatchSize is how many rows each query fetches. Defaults to
	// ReadBatchSizeDefault.
	BatchSize int
}

// ReadBatchSizeDefault is the number of rows a read fetches per query.
// Rows stream in as the iterator yields them, so a batch costs no memory;
// between batches the server waits for the next query, so fewer, longer
// batches keep it working while the caller decodes (ReadAll over the
// benchmark's log went from 0.6-0.7 to 0.7-0.9 of one raw query's speed
// when this went from 1,000 to 10,000).
const ReadBatchSizeDefault = 10_000

// ReadStream yields the events of one stream in version order. It fetches
// them in batches, so a long stream is never held in memory at once. A
// failure is yielded once as the error, and ends the sequence. With a
// Config.Replica, ReadStream, ReadCategory and ReadAll read from the
// replica (see Config.Replica, WithToken and WithPrimary).
//
//	for env, err := range store.ReadStream(ctx, "account-alice", nil) { ... }
func (s *Store) ReadStream(ctx context.Context, streamID string, opts *ReadOpts) iter.Seq2[Envelope, error] {
	return s.readStream(ctx, s.pool, true, streamID, opts)
}

// ReadStream is Store.ReadStream inside the scope's transaction: it sees
// the scope's own writes, and the locks it holds.
func (t *TxScope) ReadStream(ctx context.Context, streamID string, opts *ReadOpts) iter.Seq2[Envelope, error] {
	if err := t.live("read stream"); err != nil {
		return failed(err)
	}
	return t.store.readStream(ctx, scopeDB{t}, false, streamID, opts)
}

// readStream reads a stream from db or, when routed, from the replica or
// the primary (see reader).
func (s *Store) readStream(ctx context.Context, db dbtx, routed bool, streamID string, opts *ReadOpts) iter.Seq2[Envelope, error] {
	if _, err := validateStreamID(streamID); err != nil {
		return failed(fmt.Errorf("mire: read stream: %w", err))
	}
	return s.read(ctx, "read stream "+streamID, opts, db, routed, func(db dbtx, after int64, limit int) (pgx.Rows, error) {
		return db.Query(ctx, s.sql.readStream, streamID, after, limit)
	}, func(e *Envelope) int64 { return e.Version })
}

// ReadCategory yields the events of every stream in category, in global
// position order, in batches.
//
// Positions are taken from a sequence when a transaction inserts, so a
// transaction still open may later commit an event below a position already
// read. To follow the log without missing such events, use a projection.
func (s *Store) ReadCategory(ctx context.Context, category string, opts *ReadOpts) iter.Seq2[Envelope, error] {
	if err := validateCategory(category); err != nil {
		return failed(fmt.Errorf("mire: read category: %w", err))
	}
	return s.read(ctx, "read category "+category, opts, s.pool, true, func(db dbtx, after int64, limit int) (pgx.Rows, error) {
		return db.Query(ctx, s.sql.readCategory, category, after, limit)
	}, func(e *Envelope) int64 { return e.Position })
}

// ReadAll yields every event in the log in global position order, in
// batches; the same caution as ReadCategory applies to events still being
// committed.
func (s *Store) ReadAll(ctx context.Context, opts *ReadOpts) iter.Seq2[Envelope, error] {
	return s.read(ctx, "read all", opts, s.pool, true, func(db dbtx, after int64, limit int) (pgx.Rows, error) {
		return db.Query(ctx, s.sql.readAll, after, limit)
	}, func(e *Envelope) int64 { return e.Position })
}

func failed(err error) iter.Seq2[Envelope, error] {
	return func(yield func(Envelope, error) bool) { yield(Envelope{}, err) }
}

// read pages through a keyset query on db or, when routed, on the replica
// or the primary (see reader): each batch starts after the cursor (version
// or position) of the last envelope of the batch before. A read on the
// replica that fails for the replica's own trouble goes on from the cursor
// on the primary.
func (s *Store) read(ctx context.Context, op string, opts *ReadOpts, db dbtx, routed bool, query func(db dbtx, after int64, limit int) (pgx.Rows, error), cursor func(*Envelope) int64) iter.Seq2[Envelope, error] {
	if opts == nil {
		opts = &ReadOpts{}
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = ReadBatchSizeDefault
	}
	return func(yield func(Envelope, error) bool) {
		if err := s.check(ctx, op); err != nil {
			yield(Envelope{}, err)
			return
		}
		db, onReplica := db, false // this run's: a sequence may be ranged again
		if routed {
			db, onReplica = s.reader(ctx, "read")
		}
		// fallBack moves the read to the primary after err on the
		// replica, if err is the replica's trouble.
		fallBack := func(err error) bool {
			if !onReplica || !replicaTrouble(ctx, err) {
				return false
			}
			s.replicaFailed()
			s.fellBack(ctx, "read", fallbackUnavailable, err)
			db, onReplica = s.pool, false
			return true
		}
		after, left := opts.After, opts.Limit
		for {
			size := batch
			if opts.Limit > 0 {
				size = min(size, left)
			}
			if size <= 0 {
				return
			}
			rows, err := query(db, after, size)
			if err != nil {
				if fallBack(err) {
					continue
				}
				yield(Envelope{}, fmt.Errorf("mire: %s: %w", op, translate(ctx, err)))
				return
			}
			var env Envelope
			sc := s.newEnvelopeScanner(&env, nil, nil)
			n := 0
			for rows.Next() {
				decodeErr, err := sc.scan(rows)
				if err = cmp.Or(err, decodeErr); err != nil {
					rows.Close()
					yield(Envelope{}, fmt.Errorf("mire: %s: %w", op, err))
					return
				}
				n++
				if !yield(env, nil) {
					rows.Close()
					return
				}
				after = cursor(&env)
			}
			rows.Close()
			left -= n
			if err := rows.Err(); err != nil {
				if fallBack(err) {
					continue
				}
				yield(Envelope{}, fmt.Errorf("mire: %s: %w", op, translate(ctx, err)))
				return
			}
			if n < size {
				return
			}
		}
	}
}
