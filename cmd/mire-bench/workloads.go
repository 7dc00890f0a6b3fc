package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mire-go/mire"
)

// workload is one line of the list: how to set up a case for a
// number of writers, what it counts, and the target it must meet.
type workload struct {
	id, title string
	// unit names what a throughput counts ("saves", "events"...); byUnits
	// says it is counted in the ops' units (events) rather than in ops.
	unit    string
	byUnits bool
	// writers are the writer counts the workload runs with; nil means the
	// -writers flag.
	writers []int
	// heap samples the peak heap during each op.
	heap bool
	// heavy marks ops that take seconds (a pass over the whole log): no
	// warm-up, and two rounds of at least one op each.
	heavy bool
	// target describes the goal; met checks it (nil: no target).
	target string
	met    func(m, b *sample) bool
	setup  func(ctx context.Context, e *env, writers int) (*bcase, error)
	// procs, set instead of setup, runs a workload of runner processes
	// (partitions.go), which makes its own databases and is not measured
	// against a baseline in rounds.
	procs func(ctx context.Context, pe *procEnv) (*procResults, error)
}

// bcase is one workload at one writer count: the two sides and a note on
// their samples for the table's footnotes.
type bcase struct {
	mire, baseline side
	note           func(m, b *sample) string
	// cleanup, if set, runs when the case is done.
	cleanup func() error
	// handler, if set, gives the commit-to-handler latency of the mire
	// side's events, for a table of its own.
	handler func() *handlerLatency
}

func ratioAtLeast(r float64, byUnits bool) func(m, b *sample) bool {
	return func(m, b *sample) bool { return ratio(m, b, byUnits) >= r }
}

func ratio(m, b *sample, byUnits bool) float64 {
	if byUnits {
		return m.UnitsPerSec() / b.UnitsPerSec()
	}
	return m.OpsPerSec() / b.OpsPerSec()
}

const maxHeap = 64 << 20

var workloads = []workload{
	{id: "1", title: "Save 1 event to a new stream (Create, Record, Save)", unit: "saves",
		target: "ratio >= 0.6", met: ratioAtLeast(0.6, false), setup: newStreamCase(viaCreate)},
	{id: "1a", title: "Append 1 event to a new stream (Append, NoStream)", unit: "appends",
		target: "ratio >= 0.6", met: ratioAtLeast(0.6, false), setup: newStreamCase(viaAppend)},
	{id: "1l", title: "Save 1 event to a new stream (LoadOrNew, Record, Save)", unit: "saves",
		setup: newStreamCase(viaLoadOrNew)},
	{id: "1s", title: "Workload 1a's own statement sent with raw pgx (mire's schema) vs the baseline", unit: "appends",
		setup: handStatementCase},
	{id: "1t", title: "The baseline's INSERT into a table shaped as mire's events vs its own", unit: "appends",
		setup: wideTableCase},
	{id: "1p", title: "Workload 1 with the 16-partition index vs without (mire both sides)", unit: "saves",
		target: "ratio >= 0.95", met: ratioAtLeast(0.95, false), setup: withPartitionIndex(newStreamCase(viaCreate))},
	{id: "2", title: "Load + Record + Save on an existing stream", unit: "saves",
		target: "ratio >= 0.5", met: ratioAtLeast(0.5, false), setup: existingStreamCase},
	{id: "3", title: "Save 100 events in one save", unit: "events", byUnits: true,
		target: ">= 100,000 events/s", met: func(m, _ *sample) bool { return m.UnitsPerSec() >= 100_000 }, setup: batchCase},
	{id: "3p", title: "Workload 3 with the 16-partition index vs without (mire both sides)", unit: "events", byUnits: true,
		target: "ratio >= 0.95", met: ratioAtLeast(0.95, true), setup: withPartitionIndex(batchCase)},
	{id: "4", title: "Load a 1,000-event stream", unit: "loads", writers: []int{1},
		target: "time <= 1.5x baseline", met: ratioAtLeast(1/1.5, false), setup: longLoadCase},
	{id: "5", title: "8 writers on one stream, reload and retry", unit: "saves", writers: []int{8},
		setup: hotStreamCase},
	{id: "6", title: "TxScope transfer between 2 random accounts", unit: "transfers",
		setup: transferCase},
	{id: "7", title: "Projection catch-up, no-op transactional handler", unit: "events", byUnits: true, writers: []int{1}, heavy: true,
		target: ">= 100,000 events/s", met: func(m, _ *sample) bool { return m.UnitsPerSec() >= 100_000 }, setup: catchUpCase(false)},
	{id: "7u", title: "Projection catch-up, upsert read model", unit: "events", byUnits: true, writers: []int{1}, heavy: true,
		setup: catchUpCase(true)},
	{id: "7w", title: "Writers with a projection runner attached vs none", unit: "appends", writers: []int{8},
		setup: runnerCase},
	{id: "8", title: "Load a 10,000-event stream, no snapshots", unit: "loads", writers: []int{1},
		setup: snapshotCase(false)},
	{id: "8s", title: "Load a 10,000-event stream, snapshot every 100 events", unit: "loads", writers: []int{1},
		setup: snapshotCase(true)},
	{id: "9", title: "ReadAll through the iterator", unit: "events", byUnits: true, writers: []int{1}, heap: true, heavy: true,
		target: "peak heap < 64 MiB", met: func(m, _ *sample) bool { return m.PeakHeap < maxHeap }, setup: readAllCase},
	{id: "10", title: "Partitioned catch-up, 2 ms handler, 1, 2 and 4 runner processes", procs: scalingCase(sleepHandler)},
	{id: "10n", title: "Partitioned catch-up, no-op handler, 1, 2 and 4 runner processes", procs: scalingCase(noopHandler)},
	{id: "10r", title: "Rebalance when a runner process joins and when one is killed", procs: rebalanceCase},
}

// How workload 1 gets the Root of a new stream.
const (
	viaCreate    = iota // mire.Create: no read
	viaAppend           // Store.Append with NoStream, no Root
	viaLoadOrNew        // mire.LoadOrNew: one read that finds nothing
)

// newStreamCase is workload 1: one event to a new stream, each op its own
// stream. Baseline: one INSERT, its own transaction.
func newStreamCase(via int) func(ctx context.Context, e *env, writers int) (*bcase, error) {
	return func(ctx context.Context, e *env, writers int) (*bcase, error) {
		mireOp := func(ctx context.Context, w *worker) (int, error) {
			id := e.newID("n")
			if via == viaAppend {
				_, err := e.store.Append(ctx, mire.StreamID("account", id), mire.NoStream, Opened{Owner: id, Initial: 100})
				return 1, err
			}
			var acc *mire.Root[Account]
			var err error
			if via == viaCreate {
				acc, err = mire.Create[Account](e.store, id)
			} else {
				acc, err = mire.LoadOrNew[Account](ctx, e.store, id)
			}
			if err != nil {
				return 0, err
			}
			if err := acc.Record(Opened{Owner: id, Initial: 100}); err != nil {
				return 0, err
			}
			return 1, e.store.Save(ctx, acc)
		}
		return &bcase{mire: side{op: mireOp}, baseline: side{op: insertOp(e, baseInsertEvent)}}, nil
	}
}

// insertOp is workload 1's baseline: one INSERT (baseInsertEvent, or the
// same into another table) of one event to a new stream, its own
// transaction.
func insertOp(e *env, insert string) op {
	return func(ctx context.Context, w *worker) (int, error) {
		id := e.newID("b")
		data, eid, err := baseEncode(Opened{Owner: id, Initial: 100})
		if err != nil {
			return 0, err
		}
		_, err = e.pool.Exec(ctx, insert, "account-"+id, 1, eid, "Opened", data)
		return 1, err
	}
}

// existingStreamCase is workload 2: load a random existing stream, record
// a deposit, save with the optimistic check; retry on a conflict. Baseline:
// SELECT the stream's events and fold them, then UPDATE the version (WHERE
// version = the one read) and INSERT the event in one transaction, sent as
// one pipelined round trip; a conflict is the unique (stream, version)
// violation.
func existingStreamCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	n := e.scale.Streams
	if err := e.seed(ctx, "s", n, e.scale.StreamLen); err != nil {
		return nil, err
	}
	pick := func(w *worker) string { return "s" + strconv.Itoa(1+w.rng.IntN(n)) }
	return &bcase{
		mire:     side{op: func(ctx context.Context, w *worker) (int, error) { return 1, mireDeposit(ctx, e, w, pick(w)) }},
		baseline: side{op: func(ctx context.Context, w *worker) (int, error) { return 1, baseDeposit(ctx, e, w, pick(w)) }},
		note:     conflictNote,
	}, nil
}

// mireDeposit loads the account, records a deposit and saves it, reloading
// and retrying after a conflict.
func mireDeposit(ctx context.Context, e *env, w *worker, id string) error {
	for {
		w.attempts++
		acc, err := mire.Load[Account](ctx, e.store, id)
		if err != nil {
			return err
		}
		if err := acc.Record(Deposited{Amount: 1}); err != nil {
			return err
		}
		err = e.store.Save(ctx, acc)
		if !errors.Is(err, mire.ErrConcurrency) {
			return err
		}
		w.conflicts++
	}
}

// baseDeposit is mireDeposit by hand.
func baseDeposit(ctx context.Context, e *env, w *worker, id string) error {
	stream := "account-" + id
	for {
		w.attempts++
		var acc Account
		version, err := baseFold(ctx, e, stream, &acc)
		if err != nil {
			return err
		}
		data, eid, err := baseEncode(Deposited{Amount: 1})
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(baseBumpVersion, stream, version)
		b.Queue(baseInsertEvent, stream, version+1, eid, "Deposited", data)
		err = e.pool.SendBatch(ctx, b).Close()
		if !isUniqueViolation(err) {
			return err
		}
		w.conflicts++
	}
}

// baseFold selects a stream's events, decodes each into its struct and
// applies it, and returns the stream's version.
func baseFold(ctx context.Context, e *env, stream string, acc *Account) (int64, error) {
	rows, err := e.pool.Query(ctx, baseSelectStream, stream)
	if err != nil {
		return 0, err
	}
	var (
		version int64
		typ     string
		data    []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&version, &typ, &data}, func() error {
		event, err := decodeEvent(typ, data)
		if err != nil {
			return err
		}
		acc.Apply(event)
		return nil
	})
	return version, err
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func conflictNote(m, b *sample) string {
	rate := func(s *sample) string {
		if s.Attempts == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(s.Conflicts)/float64(s.Attempts))
	}
	return fmt.Sprintf("conflict rate (conflicts / save attempts): mire %s, baseline %s", rate(m), rate(b))
}

// batchCase is workload 3: one save of 100 events to a new stream.
// Baseline: COPY of the 100 rows.
func batchCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	n := e.scale.Batch
	return &bcase{
		mire: side{op: func(ctx context.Context, w *worker) (int, error) {
			id := e.newID("n")
			acc, err := mire.Create[Account](e.store, id)
			if err != nil {
				return 0, err
			}
			if err := acc.Record(Opened{Owner: id, Initial: 100}); err != nil {
				return 0, err
			}
			for i := 1; i < n; i++ {
				if err := acc.Record(Deposited{Amount: int64(i)}); err != nil {
					return 0, err
				}
			}
			return n, e.store.Save(ctx, acc)
		}},
		baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
			id := e.newID("b")
			stream := "account-" + id
			rows := make([][]any, n)
			for i := range rows {
				var event any = Deposited{Amount: int64(i)}
				typ := "Deposited"
				if i == 0 {
					event, typ = Opened{Owner: id, Initial: 100}, "Opened"
				}
				data, eid, err := baseEncode(event)
				if err != nil {
					return 0, err
				}
				rows[i] = []any{stream, int64(i + 1), "account", eid, typ, int32(1), data}
			}
			_, err := e.pool.CopyFrom(ctx, pgx.Identifier{"baseline", "events"},
				[]string{"stream_id", "version", "category", "event_id", "type", "schema_version", "data"},
				pgx.CopyFromRows(rows))
			return n, err
		}},
	}, nil
}

// longLoadCase is workload 4: load one 1,000-event stream into the
// aggregate. Baseline: SELECT its events and json.Unmarshal each into the
// same structs, applying them to the same aggregate.
func longLoadCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	n := e.scale.LongLen
	if err := e.seed(ctx, "long", 1, n); err != nil {
		return nil, err
	}
	return &bcase{
		mire: side{op: func(ctx context.Context, w *worker) (int, error) {
			acc, err := mire.Load[Account](ctx, e.store, "long1")
			if err == nil && acc.State.Events != n {
				err = fmt.Errorf("loaded %d events, want %d", acc.State.Events, n)
			}
			return n, err
		}},
		baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
			var acc Account
			_, err := baseFold(ctx, e, "account-long1", &acc)
			if err == nil && acc.Events != n {
				err = fmt.Errorf("loaded %d events, want %d", acc.Events, n)
			}
			return n, err
		}},
	}, nil
}

// hotStreamCase is workload 5: every writer deposits into the same stream,
// reloading and retrying on each conflict. Each round starts a new stream,
// so the stream's length stays comparable between the sides.
func hotStreamCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	var mireHot, baseHot string
	return &bcase{
		mire: side{
			round: func(ctx context.Context) error {
				mireHot = e.newID("hot")
				_, err := e.store.Append(ctx, mire.StreamID("account", mireHot), mire.NoStream, Opened{Owner: mireHot, Initial: 100})
				return err
			},
			op: func(ctx context.Context, w *worker) (int, error) { return 1, mireDeposit(ctx, e, w, mireHot) },
		},
		baseline: side{
			round: func(ctx context.Context) error {
				baseHot = e.newID("hot")
				data, err := json.Marshal(Opened{Owner: baseHot, Initial: 100})
				if err != nil {
					return err
				}
				b := &pgx.Batch{}
				b.Queue(baseCreateStream, "account-"+baseHot)
				b.Queue(baseInsertEvent, "account-"+baseHot, 1, uuid.New(), "Opened", data)
				return e.pool.SendBatch(ctx, b).Close()
			},
			op: func(ctx context.Context, w *worker) (int, error) { return 1, baseDeposit(ctx, e, w, baseHot) },
		},
		note: conflictNote,
	}, nil
}

// transferCase is workload 6: move 1 from one random account to another in
// a TxScope that locks both. Baseline: in one transaction, SELECT ... FOR
// UPDATE both stream rows (in stream order) and SELECT their events in the
// same round trip, fold them, then UPDATE both versions, INSERT both events
// and COMMIT in a second round trip.
func transferCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	n := e.scale.Accounts
	if err := e.seed(ctx, "a", n, 1); err != nil {
		return nil, err
	}
	pair := func(w *worker) (string, string) {
		a := 1 + w.rng.IntN(n)
		b := 1 + w.rng.IntN(n-1)
		if b >= a {
			b++
		}
		return "a" + strconv.Itoa(a), "a" + strconv.Itoa(b)
	}
	return &bcase{
		mire: side{op: func(ctx context.Context, w *worker) (int, error) {
			from, to := pair(w)
			return 1, e.store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
				if err != nil {
					return err
				}
				if err := accs[0].Record(Withdrawn{Amount: 1}); err != nil {
					return err
				}
				if err := accs[1].Record(Deposited{Amount: 1}); err != nil {
					return err
				}
				return scope.SaveAndCommit(ctx, accs) // the appends and COMMIT in one round trip
			})
		}},
		baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
			from, to := pair(w)
			return 1, baseTransfer(ctx, e, "account-"+from, "account-"+to)
		}},
	}, nil
}

func baseTransfer(ctx context.Context, e *env, from, to string) (err error) {
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	defer func() {
		if err != nil {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	streams := []string{from, to}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(baseLockStreams, streams)
	b.Queue(baseSelectStreams, streams)
	br := conn.SendBatch(ctx, b)
	versions := map[string]int64{}
	accs := map[string]*Account{from: {}, to: {}}
	if _, err = br.Exec(); err != nil {
		return errors.Join(err, br.Close())
	}
	var (
		stream, typ string
		version     int64
		data        []byte
	)
	rows, _ := br.Query()
	if _, err = pgx.ForEachRow(rows, []any{&stream, &version}, func() error { versions[stream] = version; return nil }); err != nil {
		return errors.Join(err, br.Close())
	}
	rows, _ = br.Query()
	_, err = pgx.ForEachRow(rows, []any{&stream, &typ, &data}, func() error {
		event, err := decodeEvent(typ, data)
		if err == nil {
			accs[stream].Apply(event)
		}
		return err
	})
	if err = errors.Join(err, br.Close()); err != nil {
		return err
	}
	if len(versions) != 2 {
		return fmt.Errorf("baseline transfer: locked %d of 2 streams", len(versions))
	}
	out, outID, err := baseEncode(Withdrawn{Amount: 1})
	if err != nil {
		return err
	}
	in, inID, err := baseEncode(Deposited{Amount: 1})
	if err != nil {
		return err
	}
	b = &pgx.Batch{}
	b.Queue(baseBumpVersions, streams)
	b.Queue(baseInsertTwo, from, versions[from]+1, outID, "Withdrawn", out, to, versions[to]+1, inID, "Deposited", in)
	b.Queue("COMMIT")
	return conn.SendBatch(ctx, b).Close()
}

// snapshotCase is workload 8: load a 10,000-event stream, as Account (a
// full replay) or as SnapAccount, whose latest snapshot is 100 events
// behind the stream's end: the most a policy of Every 100 leaves to
// replay. Baseline: SELECT all 10,000 events and fold them, as in
// workload 4.
func snapshotCase(snapshots bool) func(ctx context.Context, e *env, writers int) (*bcase, error) {
	return func(ctx context.Context, e *env, writers int) (*bcase, error) {
		n := e.scale.SnapLen
		if n < 200 || n%100 != 0 {
			return nil, fmt.Errorf("snapshot stream length %d: want a multiple of 100 from 200", n)
		}
		if err := e.seed(ctx, "long", 1, n-101); err != nil {
			return nil, err
		}
		// One Save takes the stream onto a multiple of 100 and stores the
		// snapshot there; 100 more events follow it.
		acc, err := mire.Load[SnapAccount](ctx, e.store, "long1")
		if err != nil {
			return nil, err
		}
		if err := acc.Record(Deposited{Amount: 1}); err != nil {
			return nil, err
		}
		if err := e.store.Save(ctx, acc); err != nil {
			return nil, err
		}
		more := make([]any, 100)
		for i := range more {
			more[i] = Deposited{Amount: 1}
		}
		if _, err := e.store.Append(ctx, "account-long1", mire.Exactly(int64(n-100)), more...); err != nil {
			return nil, err
		}
		var snaps int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM mire.snapshots`).Scan(&snaps); err != nil || snaps != 1 {
			return nil, fmt.Errorf("want 1 snapshot, have %d (%v)", snaps, err)
		}
		if _, err := e.pool.Exec(ctx, `INSERT INTO baseline.events (stream_id, version, category, event_id, type, data)
SELECT 'account-long1', g, 'account', gen_random_uuid(), 'Deposited', '{"amount": 1}' FROM generate_series($1::int, $2::int) g`, n-100, n); err != nil {
			return nil, err
		}
		check := func(events, balanceEvents int) error {
			if events != balanceEvents {
				return fmt.Errorf("loaded %d events, want %d", events, balanceEvents)
			}
			return nil
		}
		mireOp := func(ctx context.Context, w *worker) (int, error) {
			acc, err := mire.Load[Account](ctx, e.store, "long1")
			if err != nil {
				return 0, err
			}
			return n, check(acc.State.Events, n)
		}
		if snapshots {
			mireOp = func(ctx context.Context, w *worker) (int, error) {
				acc, err := mire.Load[SnapAccount](ctx, e.store, "long1")
				if err != nil {
					return 0, err
				}
				if acc.Version != int64(n) {
					return 0, fmt.Errorf("loaded version %d, want %d", acc.Version, n)
				}
				return n, check(acc.State.Events, n)
			}
		}
		return &bcase{
			mire: side{op: mireOp},
			baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
				var acc Account
				_, err := baseFold(ctx, e, "account-long1", &acc)
				if err != nil {
					return 0, err
				}
				return n, check(acc.Events, n)
			}},
		}, nil
	}
}

// readAllCase is workload 9: ReadAll over the whole log through the
// iterator, sampling the peak heap. Baseline: one query over the same
// table, a pgx rows loop scanning the same columns and decoding the same
// structs.
func readAllCase(ctx context.Context, e *env, writers int) (*bcase, error) {
	n := e.scale.ReadAll
	per := e.scale.LongLen
	streams := (n + per - 1) / per
	if err := fill(ctx, e, streams, per, n); err != nil {
		return nil, err
	}
	var sink int64
	return &bcase{
		mire: side{op: func(ctx context.Context, w *worker) (int, error) {
			count := 0
			for env, err := range e.store.ReadAll(ctx, nil) {
				if err != nil {
					return count, err
				}
				if d, ok := env.Data.(Deposited); ok {
					sink += d.Amount
				}
				count++
			}
			if count != n {
				return count, fmt.Errorf("read %d events, want %d", count, n)
			}
			return count, nil
		}},
		baseline: side{op: func(ctx context.Context, w *worker) (int, error) {
			rows, err := e.pool.Query(ctx, baseReadAll)
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			var (
				id                    [16]byte
				stream, category, typ string
				version, position     int64
				schema                int32
				data, meta            []byte
				recorded              time.Time
				count                 int
				md                    mire.Metadata
				scan                  = []any{&id, &stream, &category, &version, &position, &typ, &schema, &data, &meta, &recorded}
			)
			for rows.Next() {
				if err := rows.Scan(scan...); err != nil {
					return count, err
				}
				event, err := decodeEvent(typ, data)
				if err != nil {
					return count, err
				}
				if len(meta) > 0 {
					if err := json.Unmarshal(meta, &md); err != nil {
						return count, err
					}
				}
				if d, ok := event.(Deposited); ok {
					sink += d.Amount
				}
				count++
			}
			if err := rows.Err(); err != nil {
				return count, err
			}
			if count != n {
				return count, fmt.Errorf("read %d events, want %d", count, n)
			}
			return count, nil
		}},
		note: func(m, b *sample) string {
			return fmt.Sprintf("%s events in the log; peak heap in use (objects, live or not yet swept): mire %s, baseline %s (target < 64 MiB); "+
				"peak live heap after a collection: mire %s, baseline %s",
				thousands(float64(n)), mib(m.PeakHeap), mib(b.PeakHeap), mib(m.PeakLive), mib(b.PeakLive))
		},
	}, nil
}

// fill writes n events (streams of per events each, the last one shorter)
// into mire's tables for workload 9.
func fill(ctx context.Context, e *env, streams, per, n int) error {
	if _, err := e.pool.Exec(ctx, fillStreams, streams, per, n); err != nil {
		return fmt.Errorf("fill streams: %w", err)
	}
	if _, err := e.pool.Exec(ctx, fillEvents, per, n); err != nil {
		return fmt.Errorf("fill events: %w", err)
	}
	_, err := e.pool.Exec(ctx, `VACUUM ANALYZE mire.events`)
	return err
}

const (
	fillStreams = `INSERT INTO mire.streams (stream_id, category, version)
SELECT 'account-r' || i, 'account', least($2::int, $3::int - i * $2::int) FROM generate_series(0, $1::int - 1) i`
	fillEvents = `INSERT INTO mire.events (stream_id, version, category, event_id, type, schema_version, data)
SELECT 'account-r' || (g / $1::int), g % $1::int + 1, 'account', gen_random_uuid(),
	CASE WHEN g % $1::int = 0 THEN 'Opened' ELSE 'Deposited' END, 1,
	CASE WHEN g % $1::int = 0 THEN jsonb_build_object('owner', 'r' || (g / $1::int), 'initial', 0)
	     ELSE jsonb_build_object('amount', g) END
FROM generate_series(0, $2::int - 1) g`
)

// baseEncode is the baseline's share of recording an event: its JSON and a
// new UUIDv7 id, as [16]byte (pgx's fastest uuid encoding, as mire uses).
func baseEncode(event any) (data []byte, id [16]byte, err error) {
	if data, err = json.Marshal(event); err != nil {
		return nil, id, err
	}
	eid, err := uuid.NewV7()
	return data, eid, err
}
