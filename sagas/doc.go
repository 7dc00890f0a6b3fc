// Package sagas runs process managers: workflows that span several
// aggregates and services (reserve stock, charge a payment, confirm the
// order), with compensation and exactly-once effects, whose own state is an
// event stream.
//
// # Saga, TxScope or projection?
//
//   - A decision that needs several aggregates at once, now, in one
//     database: a [mire.TxScope] (Store.InTx). It locks them, decides and
//     saves atomically; nothing is left half-done.
//   - A read model, or a reaction to events that needs no memory of its
//     own: a projections.Projection.
//   - A workflow that crosses services or time, where no lock can be held
//     while it waits (a payment service answers in seconds or never), and
//     whose steps must be undone when a later one fails: a saga.
//
// # Defining a saga
//
// A saga has a state type S (JSON-encodable), a trigger ([StartOn]: an
// event type and a function giving the instance id and initial state),
// and a chain of steps, each following the one it names in After. A step's
// Action is a [Command] (a change of mire aggregates, in the saga's
// transaction) or a [Send] (a message to another service through the
// outbox, completed by its [Response]); its Compensation undoes it:
//
//	var fulfilment = sagas.MustDefine(sagas.Spec[Fulfilment]{
//		Name:  "fulfilment",
//		Start: sagas.StartOn(func(e OrderPlaced, env mire.Envelope) (string, Fulfilment, bool) {
//			return env.AggregateID(), Fulfilment{SKU: e.SKU, Qty: e.Qty}, true
//		}),
//		Steps: []sagas.Step[Fulfilment]{
//			{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
//			{Name: "charge", After: "reserve", Action: sagas.Send(charge), Compensation: sagas.Send(refund),
//				Timeout: 30 * time.Second, Retries: 2},
//			{Name: "confirm", After: "charge", Action: sagas.Command(confirm)},
//		},
//		Listen: []sagas.Listener{sagas.ListenFor(paymentSettled)},
//	})
//
// [Define] refuses, at construction, a definition that cannot run: unknown
// or duplicate step names, a cycle, two steps after one, a step but the
// last without a compensation, a Timeout on a Command. An action returns
// [Fail] to fail its step for a business reason (out of stock); any other
// error fails the batch, which the projection retries.
//
// # Running
//
// [NewRunner] in every replica, with [Runner.Run] and [Runner.Stop]:
//
//	runner, err := sagas.NewRunner(store, &sagas.Config{Projections: &projections.Config{Owner: pod}}, fulfilment)
//	go runner.Run(ctx)
//
// Each saga is a transactional projection named "saga:NAME" over its
// trigger's category, its listeners' categories and [Category]; a runner
// also fires due timers. Instances are aggregates of category [Category]
// (stream "saga-NAME:ID"); every decision (start, step, response, timeout,
// compensation) loads the instance with a row lock inside the batch's
// transaction, runs the step's Command there (in a savepoint), appends the
// instance's events, enqueues its messages with mire.Store.EnqueueTx, sets
// or deletes its timer and updates its row in the instances' read model,
// and the projection's checkpoint commits with all of it.
//
// # Responses and deadlines
//
// A Send step waits for its response: an event mapped by a [ListenFor]
// listener, or [Deliver] from an HTTP handler or a broker consumer, which
// appends a [Responded] event to the instance's stream (refusing an
// unknown instance, an ended one and a step not awaited, with
// [ErrUnknownInstance], [ErrFinished] and [ErrNotAwaited]). A step with a
// Timeout has a durable timer, a row written with the step and fired by a
// runner (any replica; FOR UPDATE SKIP LOCKED) as a [TimedOut] event in the
// instance's stream. The saga decides on inputs in stream order: a response
// recorded after the timeout is reported as [Ignored], and the reverse. A
// timed-out step is sent again (same idempotency key, new message id) up to
// Retries times, then fails.
//
// # Compensation and terminal states
//
// When a step fails, the compensations of the completed steps run in
// reverse order, each recorded as [StepCompensated], in one transaction,
// so none runs twice. A step that timed out may have taken effect: its own
// compensation runs first (it must tolerate a step that never happened;
// the receiver dedupes on the key). An instance ends exactly once, in
// [Completed], [Compensated] (with the failure's reason) or [Failed] (a
// compensation failed, or a timed-out step has no compensation: an
// operator must look). [Load] gives an instance and its version, the
// store's ReadStream its history, [List] and [Count] the instances by
// status.
//
// # Guarantees, and where they stop
//
//   - Exactly once inside PostgreSQL: a Command's writes, the saga's
//     events, its outbox messages, its timers and its read-model row commit
//     with the projection's checkpoint, under its lease and fence. A worker
//     killed in the middle of a step rolls all of it back; the next holder
//     of the lease redoes the batch from the same state.
//   - A repeated trigger (an instance that exists) starts nothing; an input
//     decided on before (a replay) is skipped.
//   - A message is recorded once in the outbox, but effects outside
//     PostgreSQL are at least once: a relay may publish a message again,
//     and a retried step sends its message again. Each message carries
//     [HeaderKey], the same for every attempt of a step, and the receiver
//     must dedupe on it (charge once per key).
//   - A timer fires at most once into the log, and is never lost: it is
//     deleted only in the transaction that records its TimedOut, or that
//     settles its step.
//   - A step's Command must change aggregates only through the scope it is
//     given; writes through another connection are outside the guarantee.
//
// Costs and limits: each saga projection reads every event of [Category]
// (the instances of all sagas), skipping other sagas' cheaply. A batch
// holds the row locks of the aggregates its steps changed until it
// commits, so sagas of a partitioned projection whose steps change shared
// aggregates (stock of one item) may deadlock; PostgreSQL aborts one batch,
// which the runner retries with backoff without counting it towards
// projections.Config.MaxAttempts; keep BatchSize small (the default,
// [BatchSizeDefault], is 100) so that such retries redo little. Rebuilding a saga's projection replays its
// inputs, which is safe but costs the read: existing instances start
// nothing, and inputs already decided on are skipped.
package sagas
