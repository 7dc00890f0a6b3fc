// Package examples_test checks the programs under jetstream/examples/:
// each is built and run against a fresh database and an embedded NATS
// server of its own, and what it prints is compared with the output below;
// a quote of it in the repository's README is checked against it too.
package examples_test

import (
	"path/filepath"
	"testing"

	"github.com/mire-go/mire/internal/exampletest"
)

// want is the output of each program, by directory.
var want = map[string]string{
	"orders": `
orders: placed order-o1: 2 x book for ann
orders: placed order-o2: 1 x lamp for ann
orders: placed order-o3: 5 x pen for ann
shipping: shop.orders.placed on application/json: 2 x book for ann (key ann, #1)
shipping: shop.orders.placed on application/json: 1 x lamp for ann (key ann, #2)
shipping: shop.orders.placed on application/json: 5 x pen for ann (key ann, #3)
orders: read model: ann has 3 orders; relay shop-relay published 3 messages, lag 0
`,
}

// TestExamples builds and runs every program under jetstream/examples/ and
// checks its output, and the repository README's quotes of it (see
// internal/exampletest). Each program starts an embedded NATS server of
// its own unless NATS_URL names one.
func TestExamples(t *testing.T) {
	exampletest.Check(t, exampletest.Options{
		Dir:     "jetstream/examples",
		Want:    want,
		READMEs: []string{filepath.Join("..", "..", "README.md")},
	})
}
