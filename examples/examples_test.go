// Package examples_test checks the programs under examples/: each is built
// and run against a fresh database, and what it prints is compared with the
// output below, line by line. A README that quotes a program's output is
// checked against it too, so neither the programs nor their docs can drift.
package examples_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mire-go/mire/internal/exampletest"
	"github.com/mire-go/mire/pgtest"
)

// want is the output of each program on a fresh database, by directory.
// Every directory under examples/ with a main.go must have an entry.
var want = map[string]string{
	"quickstart": `
refused: true mire: record on stream "account-alice": invalid main.Deposited event: field Deposited.Amount = -5 fails "gt=0"
account-alice: owner Alice, balance 70, version 3
  v1 Opened    {"owner": "Alice"}
  v2 Deposited {"amount": 100}
  v3 Withdrawn {"amount": 30}
`,
	"bank": `
after transferring 30: Alice=70, Bob=30 (sum 100)
rejected: transfer 1000000 from Alice (balance 70): insufficient funds
after the rejected transfer: Alice=70, Bob=30 (sum 100, unchanged)
`,
	"evolution": `
parcel-p1 at version 3:
  1 Old Road by post
  2 Mid Street by post
  3 New Lane by courier
as stored, and as read:
  v1 Dispatched schema 1  {"addr": "1 Old Road"}                         -> Shipped{Address: "1 Old Road", Carrier: "post"}
  v2 Shipped    schema 1  {"addr": "2 Mid Street"}                       -> Shipped{Address: "2 Mid Street", Carrier: "post"}
  v3 Shipped    schema 2  {"address": "3 New Lane", "carrier": "courier"} -> Shipped{Address: "3 New Lane", Carrier: "courier"}
`,
	"testing": `
open: balance 0 at version 1
deposit 100: balance 100 at version 2
withdraw 30: balance 70 at version 3
withdraw 100: refused: withdraw 100 with a balance of 70: insufficient funds
`,
	"telemetry": `
deposits: 100

open account
  mire.load mire.stream=account-alice mire.events=0
  mire.save mire.stream=account-alice mire.events=2 mire.version=2
mire.projection.batch mire.projection=deposits mire.events=2
  mire.projection.handle mire.projection=deposits mire.events=1 mire.stream=account-alice mire.event.type=Opened mire.version=1 (linked to mire.save)
  mire.projection.handle mire.projection=deposits mire.events=1 mire.stream=account-alice mire.event.type=Deposited mire.version=2 (linked to mire.save)

mire.events.written{mire.category=account} 2
mire.load.duration{db.operation.name=load,mire.outcome=ok} count 1
mire.loads{db.operation.name=load,mire.outcome=ok} 1
mire.projection.batch.duration{mire.outcome=ok,mire.projection=deposits} count 1
mire.projection.events{mire.projection=deposits} 2
mire.save.duration{db.operation.name=save,mire.outcome=ok} count 1
mire.saves{db.operation.name=save,mire.outcome=ok} 1
`,
	"partitions": `
6 partitions over 3 runners:
  replica-1 holds partitions 0, 3
  replica-2 holds partitions 1, 4
  replica-3 holds partitions 2, 5
  read model: 10 accounts, 40 deposits applied, total 40; 40 delivered, lag 0
replica-2 stops; its share moves to the others:
6 partitions over 2 runners:
  replica-1 holds partitions 0, 2, 4
  replica-3 holds partitions 1, 3, 5
  read model: 10 accounts, 80 deposits applied, total 80; 80 delivered, lag 0
`,
	"replica": `
replica replay paused
saved a deposit of 50: version 2
load without the token: balance 100 at version 1 (stale, from the replica)
level=WARN msg="mire: read from the primary instead of the replica" op=load reason=lag not_logged_since=0
load with the token: balance 150 at version 2 (from the primary: the replica replays nothing)
save of the stale load: mire: concurrency conflict on stream "account-alice": expected version 1, actual 2
  update attempt 1 decides on balance 100 at version 1
  update attempt 2 decides on balance 150 at version 2
update withdrew 30: balance 120 at version 3
replica replay resumed
load without the token: balance 120 at version 3
mire.replica.fallbacks{db.operation.name=load,mire.reason=lag} 1
`,
	"saga": `
o1, order confirmed
  reserve -> charge sent (attempt 1) -> charge -> confirm -> COMPLETED
o2, order cancelled: card declined
  reserve -> charge sent (attempt 1) -> charge failed -> undo reserve -> COMPENSATED
o3, order cancelled: step "charge" timed out after 2 attempt(s) of 500ms
  reserve -> charge sent (attempt 1) -> timed out -> charge sent (attempt 2) -> timed out -> charge failed -> undo charge -> undo reserve -> COMPENSATED
stock of apple: 3 available, 2 reserved
stock of pear: 3 available, 0 reserved
payment service: charge of 20 for o1 (key fulfilment/o1/charge)
`,
	"projection": `
projection balances: owner replica-1, fence 1, 4 events delivered
  Alice  100
  Bob     50
projection balances: owner replica-2, fence 2, 5 events delivered
  Alice   70
  Bob     50
`,
}

// TestExamples builds and runs every program under examples/ and checks
// its output, and the READMEs' quotes of it (see internal/exampletest).
func TestExamples(t *testing.T) {
	readmes, err := filepath.Glob(filepath.Join("*", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	exampletest.Check(t, exampletest.Options{
		Dir:     "examples",
		Want:    want,
		READMEs: append(readmes, filepath.Join("..", "README.md")),
		Skip: func(name string) string {
			if _, err := pgtest.FindBinaries(); name == "replica" && err != nil && os.Getenv(pgtest.EnvTestDatabase) != "" {
				return fmt.Sprintf("examples/replica starts its own primary and replica, which needs the PostgreSQL server programs: %v", err)
			}
			return ""
		},
	})
}
