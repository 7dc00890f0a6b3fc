package projections

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
)

// Inline registers p's handler as an inline projection of store: it runs
// inside every transaction that appends events of p's categories (all, if
// none), right after they are written, with that transaction as tx. Its
// writes commit with the events, so a caller reads its own writes as soon
// as the save returns, and a handler error fails the save. An inline
// projection has no checkpoint, lease or retries (p's Name only labels its
// errors; BatchSize is unused), and it sees only events written after it
// was registered: to build the read model from history, run the same
// handler as a Runner projection once. An inline projection holds the
// stream's row lock while it runs, and once one is registered every
// single-stream Save and Append runs in a transaction: keep handlers small.
// Like NewRunner, it refuses typed routes (On) that could never
// fire on store, naming their Go type.
func Inline(store *mire.Store, p Projection) error {
	if store == nil {
		return fmt.Errorf("mire: inline projection %q: store is nil", p.Name)
	}
	if err := p.validate(); err != nil {
		return fmt.Errorf("mire: inline projection: %w", err)
	}
	if err := p.checkRoutes(store); err != nil {
		return fmt.Errorf("mire: inline projection: %w", err)
	}
	categories := slices.Clone(p.Categories)
	return bridge.AddInline(store, func(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error {
		for _, env := range events {
			if len(categories) > 0 && !slices.Contains(categories, env.Category) {
				continue
			}
			if p.Raw && env.Type != mire.MessageType {
				env.Data = nil // as a Runner delivers it
			}
			if err := p.Handler.Handle(ctx, tx, env); err != nil {
				return fmt.Errorf("projection %q: %w", p.Name, &eventError{env: env, err: err})
			}
		}
		return nil
	})
}
