package sagas_test

import "github.com/mire-go/mire/internal/mtest"

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples
