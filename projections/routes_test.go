package projections_test

import (
	"context"
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// Unlisted is a valid event type that no registry knows.
type Unlisted struct {
	mire.Event `mire:"entity=account,type=Unlisted"`
}

// Routes that can never fire would checkpoint past their events: the read
// model would silently lose them. They are refused where they are built.
var _ = Describe("Typed routes", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("refuses a route for a pointer type, naming it", func() {
		Expect(func() {
			projections.On(func(context.Context, pgx.Tx, *Opened, mire.Envelope) error { return nil })
		}).To(PanicWith(MatchError(And(ContainSubstring("*projections_test.Opened"), ContainSubstring("not a pointer")))))
	})

	It("refuses a route for a type that is not an event struct, naming it", func() {
		Expect(func() {
			projections.On(func(context.Context, pgx.Tx, any, mire.Envelope) error { return nil })
		}).To(PanicWith(MatchError(ContainSubstring("interface {}"))))
	})

	opened := projections.On(func(context.Context, pgx.Tx, Opened, mire.Envelope) error { return nil })
	unlisted := projections.On(func(context.Context, pgx.Tx, Unlisted, mire.Envelope) error { return nil })

	It("refuses a route for a type missing from the store's registry when the projection joins a runner or the store", func() {
		p := projections.Projection{Name: "lossy", Handler: projections.Routes(opened, unlisted)}
		_, err := projections.NewRunner(e.store, nil, p)
		Expect(errors.Is(err, mire.ErrUnregistered)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(And(ContainSubstring("projections_test.Unlisted"), ContainSubstring(`"lossy"`))))
		err = projections.Inline(e.store, p)
		Expect(errors.Is(err, mire.ErrUnregistered)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(ContainSubstring("projections_test.Unlisted")))

		// Registered in the default registry is not enough: the store's
		// registry is the one that decodes its events.
		own, err := mire.New(e.pool, &mire.Config{Registry: mire.NewRegistry()})
		Expect(err).NotTo(HaveOccurred())
		_, err = projections.NewRunner(own, nil, projections.Projection{Name: "own", Handler: projections.Routes(opened)})
		Expect(errors.Is(err, mire.ErrUnregistered)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(ContainSubstring("projections_test.Opened")))
	})

	It("refuses a route for a type outside the projection's categories", func() {
		p := projections.Projection{Name: "notes", Categories: []string{"note"}, Handler: projections.Routes(opened)}
		_, err := projections.NewRunner(e.store, nil, p)
		Expect(err).To(MatchError(And(ContainSubstring("projections_test.Opened"), ContainSubstring(`"account"`), ContainSubstring("note"))))
		Expect(projections.Inline(e.store, p)).To(MatchError(ContainSubstring("projections_test.Opened")))
	})
})
