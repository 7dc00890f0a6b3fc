package sagas_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/sagas"
)

type unregistered struct {
	mire.Event `mire:"entity=elsewhere,type=Unregistered"`
	N          int `json:"n"`
}

var _ = Describe("Define", func() {
	noop := sagas.Command(func(context.Context, *mire.TxScope, *sagas.Exec[Fulfilment]) error { return nil })
	msg := sagas.Send(charge)
	step := func(name, after string) sagas.Step[Fulfilment] {
		return sagas.Step[Fulfilment]{Name: name, After: after, Action: noop, Compensation: noop}
	}
	spec := func(steps ...sagas.Step[Fulfilment]) sagas.Spec[Fulfilment] {
		return sagas.Spec[Fulfilment]{Name: "fulfilment", Start: sagas.StartOn(placed), Steps: steps}
	}

	DescribeTable("refuses a definition that cannot run, naming the problem",
		func(s sagas.Spec[Fulfilment], want string) {
			_, err := sagas.Define(s)
			Expect(err).To(MatchError(ContainSubstring(want)))
			Expect(err.Error()).To(HavePrefix(`sagas: define "` + s.Name + `": `))
		},
		Entry("a bad name", func() sagas.Spec[Fulfilment] { s := spec(step("a", "")); s.Name = "Orders!"; return s }(),
			`name "Orders!" must be 1 to 63 lowercase letters`),
		Entry("no trigger", sagas.Spec[Fulfilment]{Name: "fulfilment", Steps: []sagas.Step[Fulfilment]{step("a", "")}},
			"no trigger"),
		Entry("no steps", spec(), "no steps"),
		Entry("a step without a name", spec(step("", "")), `step 0: name ""`),
		Entry("two steps of one name", spec(step("a", ""), step("a", "a")), `step "a" given twice`),
		Entry("a step without an action", spec(sagas.Step[Fulfilment]{Name: "a"}), `step "a": no action`),
		Entry("an After naming no step", spec(step("a", ""), step("b", "nope")), `step "b": After names unknown step "nope"`),
		Entry("two first steps", spec(step("a", ""), step("b", "")), `steps "a" and "b" both have no After`),
		Entry("two steps after one", spec(step("a", ""), step("b", "a"), step("c", "a")), `steps "b" and "c" both follow "a"`),
		Entry("a cycle with no first step", spec(step("a", "b"), step("b", "a")), "the steps form a cycle, with no first step"),
		Entry("a cycle beside the chain", spec(step("a", ""), step("b", "c"), step("c", "b")), `steps ["b" "c"] are not reached from the first step "a"`),
		Entry("a step but the last without a compensation",
			spec(sagas.Step[Fulfilment]{Name: "a", Action: noop}, step("b", "a")), `step "a" has no compensation`),
		Entry("a timeout on a command", spec(sagas.Step[Fulfilment]{Name: "a", Action: noop, Timeout: time.Second}),
			`step "a": a Command step completes at once`),
		Entry("retries without a timeout", spec(sagas.Step[Fulfilment]{Name: "a", Action: msg, Retries: 2}),
			`step "a": Retries 2 without a Timeout`),
		Entry("a negative timeout", spec(sagas.Step[Fulfilment]{Name: "a", Action: msg, Timeout: -time.Second}),
			`step "a": negative timeout -1s`),
		Entry("a trigger for a pointer type", sagas.Spec[Fulfilment]{Name: "fulfilment", Steps: []sagas.Step[Fulfilment]{step("a", "")},
			Start: sagas.StartOn(func(*OrderPlaced, mire.Envelope) (string, Fulfilment, bool) { return "", Fulfilment{}, false })},
			"trigger for *sagas_test.OrderPlaced: events are delivered as struct values"),
		Entry("a listener for the trigger's type", func() sagas.Spec[Fulfilment] {
			s := spec(step("a", ""))
			s.Listen = []sagas.Listener{sagas.ListenFor(func(OrderPlaced, mire.Envelope) (string, sagas.Response, bool) { return "", sagas.Response{}, false })}
			return s
		}(), "listener for sagas_test.OrderPlaced: the type already starts the saga or has a listener"),
	)

	It("accepts a chain given in any order, whose last step needs no compensation", func() {
		d, err := sagas.Define(spec(step("c", "b"), sagas.Step[Fulfilment]{Name: "a", Action: noop, Compensation: noop}, step("b", "a")))
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Name()).To(Equal("fulfilment"))
		_, err = sagas.Define(spec(step("a", ""), sagas.Step[Fulfilment]{Name: "b", After: "a", Action: msg, Timeout: time.Second, Retries: 1}))
		Expect(err).NotTo(HaveOccurred())
	})
})

var _ = Describe("NewRunner", func() {
	It("refuses a saga whose trigger or listener type the store's registry does not hold, and a saga given twice", func(ctx SpecContext) {
		e := freshEnv(ctx)
		bad := sagas.MustDefine(sagas.Spec[Fulfilment]{Name: "odd", Start: sagas.StartOn(func(unregistered, mire.Envelope) (string, Fulfilment, bool) {
			return "", Fulfilment{}, false
		}), Steps: []sagas.Step[Fulfilment]{{Name: "a", Action: sagas.Send(charge)}}})
		_, err := sagas.NewRunner(e.store, quiet(), bad)
		Expect(err).To(MatchError(mire.ErrUnregistered))
		Expect(err.Error()).To(ContainSubstring(`saga "odd": trigger for sagas_test.unregistered`))

		_, err = sagas.NewRunner(e.store, quiet(), fulfilment(0, 0), fulfilment(0, 0))
		Expect(err).To(MatchError(`sagas: new runner: saga "fulfilment" given twice`))
		_, err = sagas.NewRunner(e.store, &sagas.Config{TimerInterval: -time.Second}, fulfilment(0, 0))
		Expect(err).To(MatchError(ContainSubstring("negative TimerInterval -1s")))
		_, err = sagas.NewRunner(e.store, nil)
		Expect(err).To(MatchError(ContainSubstring("no sagas")))
	})
})
