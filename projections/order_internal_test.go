package projections

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
)

var _ = Describe("order", func() {
	ev := func(stream string, version int64, xid, prev uint64) row {
		return row{env: mire.Envelope{StreamID: stream, Version: version, Position: int64(xid)*100 + version}, xid: xid, prevXid: prev}
	}
	// deliver feeds rows in reading order, as step does, and returns what is
	// delivered as "stream/version".
	deliver := func(o *order, rows ...row) []string {
		var out []string
		for _, r := range rows {
			if o.mustWait(&r) {
				o.hold(r)
				continue
			}
			out = append(out, r.env.StreamID+"/"+string(rune('0'+r.env.Version)))
			for _, h := range o.release(r.env.StreamID, r.env.Version) {
				out = append(out, h.env.StreamID+"/"+string(rune('0'+h.env.Version)))
			}
		}
		return out
	}

	It("releases a chain of held events once the missing predecessors arrive, whatever their order", func() {
		o := newOrder(nil)
		Expect(deliver(o,
			ev("s", 5, 10, 30), // its predecessor's transaction (30) sorts later
			ev("s", 6, 10, 10), // same transaction, after a held event
			ev("t", 1, 12, 0),  // another stream is not held up
			ev("s", 7, 15, 10),
			ev("s", 3, 20, 5), // earlier than every held event: delivered
			ev("s", 4, 30, 20),
		)).To(Equal([]string{"t/1", "s/3", "s/4", "s/5", "s/6", "s/7"}))
		Expect(o.n).To(BeZero())
		Expect(o.positions()).To(BeEmpty())
	})

	It("persists held events by position and carries on from them", func() {
		o := newOrder(nil)
		Expect(deliver(o, ev("s", 2, 10, 20))).To(BeEmpty())
		Expect(o.positions()).To(Equal([]int64{1002}))
		restored := newOrder([]row{ev("s", 2, 10, 20)}) // as acquire reloads them
		Expect(deliver(restored, ev("s", 3, 11, 10), ev("s", 1, 20, 0))).To(Equal([]string{"s/1", "s/2", "s/3"}))
	})

	It("does not hold events in plain order", func() {
		o := newOrder(nil)
		Expect(deliver(o, ev("s", 1, 5, 0), ev("s", 2, 5, 5), ev("s", 3, 9, 5))).To(Equal([]string{"s/1", "s/2", "s/3"}))
		Expect(o.n).To(BeZero())
	})
})
