package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// readAt is where a read starts: the cursor (the last event read, its
// transaction and the first row of its append), the floor, and how many
// heads to ask for (see adapt; 0: limit + 1). A read depends on nothing
// else that changes, so the next batch can be read ahead (see prefetch).
type readAt struct {
	xid              uint64
	pos, head, floor int64
	heads            int
}

// at returns where w's next read starts.
func (w *worker) at() readAt {
	return readAt{xid: w.cursorXid, pos: w.cursorPos, head: w.cursorHead, floor: w.floor, heads: w.heads}
}

// read returns the next events after the cursor in (xid, position) order,
// at most limit, and whether more may be waiting; see readFrom.
func (w *worker) read(ctx context.Context, db querier, limit int) ([]scannedRow, bool, error) {
	rows, more, heads, err := w.readFrom(ctx, db, limit, w.at())
	if err == nil {
		w.heads = heads
	}
	return rows, more, err
}

// readFrom returns the events after at in (xid, position) order, at most
// limit, whether more may be waiting, and the heads the next read should
// ask for. It reads only fields of w that hold for the whole lease, so it
// may run beside the batch in flight.
//
// Only each append's first row (its head) is indexed for readers, so a
// large append costs writers one index entry per subscriber index, not
// one per event. read takes the next heads, then, in a second query only
// when some of them begin appends of several events, the rest of those
// appends by (stream, version). A head of a one-event append is its whole
// append, so a log of small appends is read in one query, as before.
func (w *worker) readFrom(ctx context.Context, db querier, limit int, at readAt) ([]scannedRow, bool, int, error) {
	want := at.heads
	if want <= 0 || want > limit+1 {
		// Every head holds at least one event, and the cursor's own append
		// may have none left: limit+1 heads always cover limit events.
		want = limit + 1
	}
	var q pgx.Rows
	var err error
	args := []any{at.xid, at.head, at.floor, want}
	sql := w.sql.readHeads
	if len(w.p.Categories) > 0 {
		args, sql = append(args, w.p.Categories), w.sql.readHeadsCategories
	}
	if w.g.partitioned() {
		args = append(args, w.part)
	}
	q, err = db.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, 0, fmt.Errorf("mire: projection %q: read events: %w", w.p.Name, err)
	}
	heads, err := w.scan(q, want)
	if err != nil {
		return nil, false, 0, err
	}
	more := len(heads) == want
	nextHeads := adapt(heads, limit, at.heads)

	// Keep the heads the batch can use: the cursor's own append (what is
	// left of it is unknown, so it counts for nothing), then appends until
	// they hold limit events. Note the rest of each multi-event append.
	var rest restQuery
	events := 0
	for i, h := range heads {
		if events >= limit {
			heads, more = heads[:i], true
			break
		}
		cursors := !at.before(h.row)
		if !cursors {
			events += int(h.size)
		}
		if h.size > 1 {
			rest.add(i, h, cursors)
		}
	}
	restOf, err := w.readRest(ctx, db, &rest, at.pos)
	if err != nil {
		return nil, false, 0, err
	}

	var out []scannedRow
	if len(restOf) == 0 {
		// Appends of one event each (the common case): the heads are the
		// events, kept in place.
		out = heads[:0]
	} else {
		out = make([]scannedRow, 0, min(limit, events+len(heads)))
	}
	for i, h := range heads {
		h.head = h.env.Position
		if at.before(h.row) {
			out = append(out, h)
		}
		for _, r := range restOf[i] {
			if r.head = h.head; at.before(r.row) {
				out = append(out, r)
			}
		}
		if len(out) >= limit {
			return out[:limit], true, nextHeads, nil
		}
	}
	return out, more, nextHeads, nil
}

// querier is what the reader reads through: the pool, or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// before reports whether the cursor sorts before r: r is still to read.
func (at readAt) before(r row) bool {
	return r.xid > at.xid || r.xid == at.xid && r.env.Position > at.pos
}

// adapt sizes the next read's heads to the appends just seen (or keeps
// heads if none were): limit+1 while they hold one event each, fewer as
// they grow, so that a log of large appends does not fetch and decode
// heads a batch cannot use.
func adapt(seen []scannedRow, limit, heads int) int {
	if len(seen) == 0 {
		return heads
	}
	var events int64
	for _, h := range seen {
		events += h.size
	}
	return limit/max(1, int(events)/len(seen)) + 2
}

// restQuery collects the appends whose rest read must fetch: for each, the
// index of its head, its stream, and its version range.
type restQuery struct {
	heads       []int
	streams     []string
	first, last []int64 // the versions to read; first 0: after the cursor
	lo          []int64 // the lowest version the append can hold after its head
}

// add notes the rest of the append headed by h (heads[i]). The cursor's
// own append starts after the cursor's event, which the query looks up
// (first = 0).
func (q *restQuery) add(i int, h scannedRow, cursors bool) {
	first := h.env.Version + 1
	if cursors {
		first = 0
	}
	q.heads = append(q.heads, i)
	q.streams = append(q.streams, h.env.StreamID)
	q.first = append(q.first, first)
	q.last = append(q.last, h.env.Version+h.size-1)
	q.lo = append(q.lo, h.env.Version+1)
}

// readRest reads the rest of the appends in q and returns their events by
// head index, in version order; cursorPos is the cursor's event.
func (w *worker) readRest(ctx context.Context, db querier, q *restQuery, cursorPos int64) (map[int][]scannedRow, error) {
	if len(q.heads) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, w.sql.readRest, q.streams, q.first, q.last, cursorPos)
	if err != nil {
		return nil, fmt.Errorf("mire: projection %q: read events: %w", w.p.Name, err)
	}
	var size int64
	for i := range q.heads {
		size += q.last[i] - q.lo[i] + 1
	}
	got, err := w.scan(rows, int(size))
	if err != nil {
		return nil, err
	}
	// The rows come append by append, each in version order, and two
	// appends of one stream have disjoint version ranges.
	out := make(map[int][]scannedRow, len(q.heads))
	j := 0
	for _, r := range got {
		for j < len(q.heads) && (r.env.StreamID != q.streams[j] || r.env.Version < q.lo[j] || r.env.Version > q.last[j]) {
			j++
		}
		if j == len(q.heads) {
			return nil, fmt.Errorf("mire: projection %q: read events: %s v%d belongs to no append read", w.p.Name, r.env.StreamID, r.env.Version)
		}
		out[q.heads[j]] = append(out[q.heads[j]], r)
	}
	return out, nil
}
