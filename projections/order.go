package projections

import (
	"slices"

	"github.com/mire-go/mire"
)

// row is one event as the reader sees it: the envelope plus the writing
// transaction and the transaction of the stream's previous append.
type row struct {
	env     mire.Envelope
	xid     uint64
	prevXid uint64 // 0: the stream's first append
}

// order keeps each stream's events in version order across transactions.
//
// The reader pages by (xid, position). A transaction that got its xid early
// (it wrote something else first) can append to a stream after a later
// transaction committed to it: its events carry the lower xid and are read
// first, before their predecessors. Each event row records its stream's
// previous appending transaction (prevXid). An event whose prevXid sorts
// after its own xid, or whose stream already has an earlier event held, is
// held back; it is released as soon as its stream's previous version has
// been delivered. Writers pay nothing for this: the append updates the
// stream row anyway.
//
// The held events persist with the checkpoint (as positions), so the order
// holds across batches, restarts and takeovers, whatever the batch size.
type order struct {
	held map[string][]row // per stream, sorted by version
	n    int
}

func newOrder(held []row) *order {
	o := &order{held: make(map[string][]row)}
	for _, r := range held {
		o.hold(r)
	}
	return o
}

// mustWait reports whether r has to wait for an earlier event of its stream.
func (o *order) mustWait(r *row) bool {
	if r.prevXid > r.xid {
		return true // the predecessor's transaction sorts later: not read yet
	}
	if o.n == 0 {
		return false
	}
	hs := o.held[r.env.StreamID]
	return len(hs) > 0 && hs[0].env.Version < r.env.Version
}

func (o *order) hold(r row) {
	hs := o.held[r.env.StreamID]
	i, _ := slices.BinarySearchFunc(hs, r.env.Version, func(h row, v int64) int { return int(h.env.Version - v) })
	o.held[r.env.StreamID] = slices.Insert(hs, i, r)
	o.n++
}

// release returns the held events of stream that follow version, in order,
// and forgets them.
func (o *order) release(stream string, version int64) []row {
	if o.n == 0 {
		return nil // nothing held: skip the map lookup
	}
	hs := o.held[stream]
	i := 0
	for i < len(hs) && hs[i].env.Version == version+int64(i)+1 {
		i++
	}
	if i == 0 {
		return nil
	}
	out := slices.Clone(hs[:i])
	if i == len(hs) {
		delete(o.held, stream)
	} else {
		o.held[stream] = hs[i:]
	}
	o.n -= i
	return out
}

// positions returns the positions of the held events, for the checkpoint.
func (o *order) positions() []int64 {
	out := make([]int64, 0, o.n)
	for _, hs := range o.held {
		for _, h := range hs {
			out = append(out, h.env.Position)
		}
	}
	slices.Sort(out)
	return out
}

func (o *order) clone() *order {
	c := &order{held: make(map[string][]row, len(o.held)), n: o.n}
	for k, v := range o.held {
		c.held[k] = slices.Clone(v)
	}
	return c
}
