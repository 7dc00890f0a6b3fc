package mire

import (
	"fmt"
	"reflect"
	"sync"
)

// aggregateTypes caches checkAggregateType's verdict: reflect.Type -> error
// (nil for a type that passed).
var aggregateTypes sync.Map

// checkAggregateType catches the aggregate type mistakes the compiler lets
// through, once per type T (the state type, whose pointer is the
// Aggregate). Today that is Apply declared on the value receiver: the
// pointer's method set includes it, so Load compiles, but every event folds
// into a copy and State stays zero.
func checkAggregateType(t reflect.Type) error {
	if cached, ok := aggregateTypes.Load(t); ok {
		err, _ := cached.(error)
		return err
	}
	var err error
	if _, ok := t.MethodByName("Apply"); ok {
		err = fmt.Errorf("method Apply has a value receiver (func (%s) Apply), so it folds events into a copy and State never changes: declare func (*%s) Apply(event any)", t.Name(), t.Name())
	}
	aggregateTypes.Store(t, err)
	return err
}
