// Package registryinfo lets mire's own packages ask a mire.Registry about a
// Go type without widening the root package's API. The root package fills
// in Entity when it is initialised (registryinfo.go there); this package
// cannot import the root, which imports it.
package registryinfo

import "reflect"

// Entity returns the entity (the stream category) under which the Go type
// t is registered in reg, a *mire.Registry, and false if it is not.
var Entity func(reg any, t reflect.Type) (entity string, ok bool)
