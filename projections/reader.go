package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// read returns the next events after the cursor in (xid, position) order,
// at most limit, and whether more may be waiting.
//
// Only each append's first row (its head) is indexed for readers, so a
// large append costs writers one index entry per subscriber index, not
// one per event. read takes the next heads, then, in a second query only
// when some of them begin appends of several events, the rest of those
// appends by (stream, version). A head of a one-event append is its whole
// append, so a log of small appends is read in one query, as before.
func (w *worker) read(ctx context.Context, db querier, limit int) ([]scannedRow, bool, error) {
	want := w.heads
	if want <= 0 || want > limit+1 {
		// Every head holds at least one event, and the cursor's own append
		// may have none left: limit+1 heads always cover limit events.
		want = limit + 1
	}
	var q pgx.Rows
	var err error
	args := []any{w.cursorXid, w.cursorHead, w.floor, want}
	sql := w.sql.readHeads
	if len(w.p.Categories) > 0 {
		args, sql = append(args, w.p.Categories), w.sql.readHeadsCategories
	}
	if w.g.partitioned() {
		args = append(args, w.part)
	}
	q, err = db.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("mire: projection %q: read events: %w", w.p.Name, err)
	}
	heads, err := w.scan(q, want)
	if err != nil {
		return nil, false, err
	}
	more := len(heads) == want
	w.adapt(heads, limit)

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
		cursors := !w.after(h.row)
		if !cursors {
			events += int(h.size)
		}
		if h.size > 1 {
			rest.add(i, h, cursors)
		}
	}
	restOf, err := w.readRest(ctx, db, &rest)
	if err != nil {
		return nil, false, err
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
		if w.after(h.row) {
			out = append(out, h)
		}
		for _, r := range restOf[i] {
			if r.head = h.head; w.after(r.row) {
				out = append(out, r)
			}
		}
		if len(out) >= limit {
			return out[:limit], true, nil
		}
	}
	return out, more, nil
}

// querier is what the reader reads through: the pool, or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// after reports whether r sorts after the cursor.
func (w *worker) after(r row) bool {
	return r.xid > w.cursorXid || r.xid == w.cursorXid && r.env.Position > w.cursorPos
}

// adapt sizes the next read's heads to the appends just seen: limit+1
// while they hold one event each, fewer as they grow, so that a log of
// large appends does not fetch and decode heads a batch cannot use.
func (w *worker) adapt(heads []scannedRow, limit int) {
	if len(heads) == 0 {
		return
	}
	var events int64
	for _, h := range heads {
		events += h.size
	}
	w.heads = limit/max(1, int(events)/len(heads)) + 2
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
// head index, in version order.
func (w *worker) readRest(ctx context.Context, db querier, q *restQuery) (map[int][]scannedRow, error) {
	if len(q.heads) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, w.sql.readRest, q.streams, q.first, q.last, w.cursorPos)
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
