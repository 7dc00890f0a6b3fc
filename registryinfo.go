package mire

import (
	"reflect"

	"github.com/mire-go/mire/internal/registryinfo"
)

// Answers registryinfo.Entity for the projections package, which refuses
// typed routes for Go types the store's registry does not know.
func init() {
	registryinfo.Entity = func(reg any, t reflect.Type) (string, bool) {
		if t == nil || t.Kind() == reflect.Pointer {
			return "", false
		}
		et, err := reg.(*Registry).lookup(reflect.Zero(t).Interface())
		if err != nil {
			return "", false
		}
		return et.tag.Entity, true
	}
}
