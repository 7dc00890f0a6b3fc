package mire

import "fmt"

// Rehydrate returns a Root for id rebuilt from history without a store: the
// events are applied in order as versions 1..n, so Version is n and nothing
// is pending. Record then works on it as on a Root that Load returned. It
// is for specs of an aggregate's commands (given these past events, when
// the command runs, then it records these) and for state rebuilt from
// events held elsewhere; a Save of it expects its stream at version n.
//
// A nil reg means DefaultRegistry(). Rehydrate refuses what Load and Record
// refuse, with the same errors: a bad id (ErrInvalidID), Apply declared on
// the value receiver, and any history event Record would refuse (nil, not
// registered (ErrUnregistered), of another entity than the aggregate's
// category or failing its `validate` tags (ErrInvalidEvent)). The error
// names the event's index in history.
//
//	acc, err := mire.Rehydrate[Account](nil, "alice", Opened{Owner: "Alice"}, Deposited{Amount: 100})
func Rehydrate[T any, PT interface {
	*T
	Aggregate
}](reg *Registry, id string, history ...any) (*Root[T], error) {
	if reg == nil {
		reg = defaultRegistry
	}
	root, err := emptyRoot[T, PT](reg, id, "rehydrate")
	if err != nil {
		return nil, err
	}
	for i, event := range history {
		p, err := reg.prepare(root.category, event)
		if err != nil {
			return nil, fmt.Errorf("mire: rehydrate stream %q: event %d: %w", root.StreamID(), i, err)
		}
		root.apply(p.value, int64(i+1))
	}
	return root, nil
}
