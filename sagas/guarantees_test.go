package sagas_test

import (
	"context"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/sagas"
)

var _ = Describe("A saga's steps", func() {
	It("run once each, in order: a command in the saga's transaction, one message with a stable idempotency key, then the next step on its response", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		e.run(quiet(), fulfilment(0, 0))
		e.place(ctx, "o1", "apple", 3, 30)

		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))
		Expect(e.inventory(ctx, "apple")).To(HaveField("Available", BeEquivalentTo(7)))
		msgs := e.messages(ctx, "payments.charge")
		Expect(msgs).To(HaveLen(1))
		Expect(msgs[0].Headers).To(HaveKeyWithValue(sagas.HeaderKey, "fulfilment/o1/charge"))
		Expect(msgs[0].Headers).To(HaveKeyWithValue(sagas.HeaderInstance, "o1"))

		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", sagas.Response{Step: "charge", Key: "pay-1"})).To(Succeed())
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Completed))
		in, err := e.instance("fulfilment", "o1")(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(in.Done).To(Equal([]string{"reserve", "charge", "confirm"}))
		Expect(e.history(ctx, "fulfilment", "o1")).To(Equal([]string{
			"Started", "StepCompleted", "StepStarted", "Responded", "StepCompleted", "StepCompleted", "Ended"}))
		order, err := mire.Load[Order](ctx, e.store, "o1")
		Expect(err).NotTo(HaveOccurred())
		Expect(order.State.Status).To(Equal("confirmed"))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(7))
		Expect(e.messages(ctx, "payments.charge")).To(HaveLen(1))
	})

	It("start once per instance: a repeated trigger is a no-op", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		e.run(quiet(), fulfilment(0, 0))
		e.place(ctx, "o1", "apple", 3, 30)
		_, err := e.store.Append(ctx, "order-o1", mire.Any, OrderPlaced{SKU: "apple", Qty: 3, Amount: 30})
		Expect(err).NotTo(HaveOccurred())
		_, err = e.store.Append(ctx, "order-o2", mire.NoStream, OrderPlaced{SKU: "apple", Qty: 1, Amount: 10})
		Expect(err).NotTo(HaveOccurred())

		Eventually(e.instance("fulfilment", "o2")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))
		Expect(e.history(ctx, "fulfilment", "o1")).To(Equal([]string{"Started", "StepCompleted", "StepStarted"}))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(6))
		Expect(e.messages(ctx, "payments.charge")).To(HaveLen(2))
	})

	It("roll back with the batch when a command errs, so its effect happens once when the batch is redone", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		failures := 2
		flaky := sagas.Command(func(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
			if err := reserve(ctx, scope, x); err != nil {
				return err
			}
			if failures > 0 { // after the reservation was saved in the batch's transaction
				failures--
				return errors.New("connection lost")
			}
			return nil
		})
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: flaky, Compensation: sagas.Command(release)},
				{Name: "confirm", After: "reserve", Action: sagas.Command(confirm)},
			},
		})
		e.run(quiet(), def)
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Completed))
		Expect(failures).To(BeZero())
		inv := e.inventory(ctx, "apple")
		Expect(inv.Available).To(BeEquivalentTo(7))
		Expect(inv.Reserved).To(Equal(map[string]int64{"o1": 3}))
	})
})

var _ = Describe("Compensation", func() {
	It("undoes the completed steps in reverse order, each once, when a response fails a step, and ends compensated with the reason", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		e.run(quiet(), fulfilment(0, 0, settled))
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))

		_, err := e.store.Append(ctx, "payment-p1", mire.NoStream, PaymentSettled{Order: "o1", Declined: "card declined"})
		Expect(err).NotTo(HaveOccurred())
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Compensated), HaveField("Reason", "card declined"),
			HaveField("Undone", []string{"reserve"}), HaveField("FailedStep", "charge")))
		Expect(e.inventory(ctx, "apple")).To(And(HaveField("Available", BeEquivalentTo(10)), HaveField("Reserved", HaveKeyWithValue("o1", BeZero()))))
		Expect(e.messages(ctx, "payments.refund")).To(BeEmpty(), "the declined step itself did nothing to undo")
		order, err := mire.Load[Order](ctx, e.store, "o1")
		Expect(err).NotTo(HaveOccurred())
		Expect(order.State.Status).To(Equal("cancelled"))
		Expect(e.history(ctx, "fulfilment", "o1")).To(Equal([]string{
			"Started", "StepCompleted", "StepStarted", "StepFailed", "StepCompensated", "Ended"}))
	})

	It("leaves nothing of a command that fails its step, undoes nothing after it, and ends compensated", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 2)
		e.run(quiet(), fulfilment(0, 0))
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Compensated), HaveField("Reason", ContainSubstring("out of stock")), HaveField("Undone", BeEmpty())))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(2))
		Expect(e.messages(ctx, "payments.charge")).To(BeEmpty())
	})

	It("ends failed, needing an operator, with the reason, when a compensation fails", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(
					func(context.Context, *mire.TxScope, *sagas.Exec[Fulfilment]) error {
						return sagas.Fail("warehouse offline")
					})},
				{Name: "charge", After: "reserve", Action: sagas.Command(
					func(context.Context, *mire.TxScope, *sagas.Exec[Fulfilment]) error { return sagas.Fail("no card") })},
			},
		})
		e.run(quiet(), def)
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Failed), HaveField("Reason", `no card; compensation of step "reserve" failed: warehouse offline`)))
		Eventually(func(ctx context.Context) ([]sagas.Info, error) {
			return sagas.List(ctx, e.store, "fulfilment", &sagas.ListOpts{Status: sagas.Failed})
		}).WithContext(ctx).Should(ConsistOf(And(HaveField("ID", "o1"), HaveField("Reason", ContainSubstring("warehouse offline")))))
	})
})

var _ = Describe("Durable timers", func() {
	It("wake a step that gets no response: it is sent again with the same idempotency key, then fails, and its own compensation runs too", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		cfg := quiet()
		timeout := 4 * cfg.TimerInterval
		e.run(cfg, fulfilment(timeout, 1))
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Compensated), HaveField("Reason", ContainSubstring("timed out after 2 attempt(s)"))))
		charges := e.messages(ctx, "payments.charge")
		Expect(charges).To(HaveLen(2))
		Expect(charges[0].ID).NotTo(Equal(charges[1].ID))
		Expect(charges[0].Headers[sagas.HeaderKey]).To(Equal(charges[1].Headers[sagas.HeaderKey]))
		refunds := e.messages(ctx, "payments.refund")
		Expect(refunds).To(HaveLen(1), "the timed-out charge may have happened: it is refunded")
		Expect(refunds[0].Headers).To(HaveKeyWithValue(sagas.HeaderKey, "fulfilment/o1/charge/compensate"))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(10))
		Expect(e.history(ctx, "fulfilment", "o1")).To(Equal([]string{
			"Started", "StepCompleted", "StepStarted", "TimedOut", "StepStarted", "TimedOut",
			"StepFailed", "StepCompensated", "StepCompensated", "Ended"}))
		Expect(countRows(ctx, e, `SELECT count(*) FROM mire.saga_timers`)).To(BeZero())
	})

	It("survive a restart: a timer due while no runner runs fires when one starts, and a response after it is ignored (stream order decides)", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		cfg := quiet()
		def := fulfilment(4*cfg.TimerInterval, 0)
		r1, err := sagas.NewRunner(e.store, cfg, def)
		Expect(err).NotTo(HaveOccurred())
		done := make(chan error, 1)
		go func() { done <- r1.Run(context.Background()) }()
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))
		Expect(r1.Stop(ctx)).To(Succeed())
		Expect(<-done).To(Succeed())
		Expect(countRows(ctx, e, `SELECT count(*) FROM mire.saga_timers`)).To(Equal(1))

		// A tool fires the due timer while no runner runs; then the late
		// response arrives, recorded after the timeout.
		Eventually(func(ctx context.Context) (int, error) { return r1.FireDue(ctx) }).WithContext(ctx).Should(Equal(1))
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", sagas.Response{Step: "charge"})).To(Succeed())

		e.run(cfg, def)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Compensated))
		Expect(e.history(ctx, "fulfilment", "o1")).To(Equal([]string{
			"Started", "StepCompleted", "StepStarted", "TimedOut", "Responded",
			"StepFailed", "StepCompensated", "StepCompensated", "Ended", "Ignored"}))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(10))
	})
})

var _ = Describe("A step whose effect is unknown", func() {
	It("ends the instance failed, for an operator, when it timed out and has no compensation, undoing nothing", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		cfg := quiet()
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
				{Name: "charge", After: "reserve", Action: sagas.Send(charge), Timeout: 4 * cfg.TimerInterval},
			},
		})
		e.run(cfg, def)
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Failed),
			HaveField("Reason", `step "charge" timed out after 1 attempt(s) of 200ms; its effect is unknown and it has no compensation`),
			HaveField("Undone", BeEmpty())))
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(7), "the reservation stands until an operator decides")
	})

	It("fails its step without sending anything when its Send action returns Fail", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
				{Name: "charge", After: "reserve", Action: sagas.Send(func(context.Context, *sagas.Exec[Fulfilment]) (mire.Message, error) {
					return mire.Message{}, sagas.Fail("no card on file")
				})},
			},
		})
		e.run(quiet(), def)
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(And(
			HaveField("Status", sagas.Compensated), HaveField("Reason", "no card on file"), HaveField("Undone", []string{"reserve"})))
		Expect(e.messages(ctx, "payments.charge")).To(BeEmpty())
		Expect(e.inventory(ctx, "apple").Available).To(BeEquivalentTo(10))
	})
})

var _ = Describe("Deliver", func() {
	It("refuses unknown and finished instances and steps not awaited, and recognises a response given again with its key", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		e.run(quiet(), fulfilment(0, 0))
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "nobody", sagas.Response{Step: "charge"})).To(MatchError(sagas.ErrUnknownInstance))

		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", sagas.Response{Step: "confirm"})).To(MatchError(sagas.ErrNotAwaited))
		ok := sagas.Response{Step: "charge", Key: "payment-42"}
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", ok)).To(Succeed())
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", ok)).To(Succeed(), "a redelivery")
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Completed))
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", ok)).To(Succeed(), "a redelivery after the end")
		err := sagas.Deliver(ctx, e.store, "fulfilment", "o1", sagas.Response{Step: "charge", Key: "payment-43"})
		Expect(err).To(MatchError(sagas.ErrFinished))
		Expect(err.Error()).To(ContainSubstring(`instance "o1" is completed`))
		Expect(e.history(ctx, "fulfilment", "o1")).To(HaveExactElements(
			"Started", "StepCompleted", "StepStarted", "Responded", "StepCompleted", "StepCompleted", "Ended"))

		Expect(sagas.Deliver(ctx, e.store, "Bad Name", "o1", ok)).To(MatchError(ContainSubstring(`saga name "Bad Name"`)))
		Expect(sagas.Deliver(ctx, e.store, "fulfilment", "o1", sagas.Response{})).To(MatchError(ContainSubstring(`step name ""`)))
	})
})

var _ = Describe("Instances", func() {
	It("are aggregates with their history, listed by status", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 5)
		e.run(quiet(), fulfilment(0, 0))
		e.place(ctx, "o1", "apple", 3, 30)
		e.place(ctx, "o2", "apple", 3, 30) // out of stock
		Eventually(e.instance("fulfilment", "o2")).WithContext(ctx).Should(HaveField("Status", sagas.Compensated))
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))

		root, err := mire.Load[sagas.Instance](ctx, e.store, sagas.InstanceID("fulfilment", "o1"))
		Expect(err).NotTo(HaveOccurred())
		state, err := sagas.StateOf[Fulfilment](&root.State)
		Expect(err).NotTo(HaveOccurred())
		Expect(state).To(Equal(Fulfilment{Order: "o1", SKU: "apple", Qty: 3, Amount: 30}))
		Expect(root.StreamID()).To(Equal("saga-fulfilment:o1"))

		Expect(sagas.List(ctx, e.store, "fulfilment", &sagas.ListOpts{Status: sagas.Running})).To(ConsistOf(
			And(HaveField("ID", "o1"), HaveField("Step", "charge"))))
		Expect(sagas.List(ctx, e.store, "fulfilment", &sagas.ListOpts{Status: sagas.Compensated})).To(ConsistOf(
			And(HaveField("ID", "o2"), HaveField("Reason", ContainSubstring("out of stock")))))
		Expect(sagas.Count(ctx, e.store, "fulfilment")).To(Equal(map[sagas.Status]int{sagas.Running: 1, sagas.Compensated: 1}))
		_, err = sagas.List(ctx, e.store, "fulfilment", &sagas.ListOpts{Status: "lost"})
		Expect(err).To(MatchError(ContainSubstring(`unknown status "lost"`)))
		_, err = sagas.List(ctx, e.store, "Fulfilment", nil)
		Expect(err).To(MatchError(`sagas: list: saga name "Fulfilment" must be 1 to 63 lowercase letters, digits or _, starting with a letter`))
		_, err = sagas.Load(ctx, e.store, "fulfilment", "")
		Expect(err).To(MatchError(mire.ErrInvalidID))
	})
})

func countRows(ctx context.Context, e env, sql string) int {
	var n int
	Expect(e.pool.QueryRow(ctx, sql).Scan(&n)).To(Succeed())
	return n
}

var _ = time.Second
