// Package jetstream relays mire's log and outbox to NATS JetStream, each
// message once into the broker and in the order of each stream of the log,
// and helps other Go services consume what it publishes.
//
// It is a Go module of its own (github.com/mire-go/mire/jetstream), so
// that the core module pulls no NATS code.
//
// # Relaying
//
// A [Relay] is a projection (package projections) whose handler publishes:
// it gets leases and fencing (one active relay per Name across all
// replicas), status and lag, retries, halts and admin calls from the
// projections runner. It publishes the events of the categories it is
// given (the message id is the event id, the subject
// "<prefix>.<category>.<type>" unless Config.Subject says otherwise) and
// the outbox messages of the outboxes it is given (mire.Message, recorded
// with Store.EnqueueTx in the transaction of the change that caused them):
//
//	relay, err := jetstream.NewRelay(store, js, &jetstream.Config{
//		Stream:     "SHOP",                                 // bound to the subjects below
//		Categories: []string{"order", mire.OutboxDefault}, // events of "order", and the outbox
//		SubjectPrefix: "shop",                              // shop.order.Placed
//	})
//	go relay.Run(ctx)       // in every replica
//	defer relay.Stop(ctx)   // before closing the pool
//
// The relay decodes no payload (projections.Projection.Raw): it publishes
// each event's JSON as stored, so its process needs no event type
// registered.
//
// Every message carries Nats-Msg-Id (the event's or message's id),
// Nats-Expected-Stream, and the headers [HeaderStream], [HeaderVersion],
// [HeaderPosition], [HeaderType], [HeaderSchemaVersion],
// [HeaderRecordedAt], and, when set, [HeaderCorrelationID],
// [HeaderCausationID], [HeaderActor] and the W3C traceparent and
// tracestate of the span that wrote the event. An outbox message's own
// headers come first; the relay's win.
//
// # Guarantees
//
//   - No message lost: the relay reads with the projections' gap-safe
//     reader, so an event or message committed late by a slow transaction
//     is published too; the checkpoint moves, in the projection's
//     transaction, only after JetStream acknowledged every message of the
//     batch.
//   - None stored twice: after a crash, a failed batch or a takeover, the
//     batch is published again under the same Nats-Msg-Id, and JetStream
//     drops what it stored already, within the stream's duplicate window.
//     [Relay.CheckStream] (run by Run) warns when the window is shorter
//     than a republish can take: lease TTL + recheck interval + publish
//     timeout.
//   - Per-stream order: the reader delivers each stream's events in version
//     order (an outbox's key is its stream), and the relay publishes a
//     stream's next message only after JetStream acknowledged the one
//     before, so a publish that fails and is retried is never overtaken by
//     a later message of its stream, whatever the broker did with the
//     messages in flight, also across relays (a paused one that wakes up
//     publishes in order too, and a duplicate is acknowledged only if the
//     original is stored). Messages of different streams are published
//     concurrently, up to Config.MaxInFlight.
//   - A broker outage shorter than Config.PublishTimeout costs a pause: the
//     relay retries the failed messages with backoff inside the batch. A
//     longer one fails the batch as [projections.Transient], which the
//     runner retries with its own growing backoff for as long as the
//     outage lasts, without counting it towards a halt.
//
// # Consuming
//
// [Consume] hands a durable consumer's messages to a handler as
// [Delivery] values (the event decoded through a registry, or an outbox
// message rebuilt) and acknowledges each after the handler returns nil;
// Delivery.ID, the message id, lets the handler ignore a redelivery.
//
// # Limits
//
//   - A stream's throughput is one message per broker round trip: streams
//     with many events per batch publish slower than many streams with few.
//     A batch that cannot be published within Config.PublishTimeout (a
//     hot stream's backlog behind a distant broker) fails for the moment;
//     the runner halves it until one gets through, so the relay goes on,
//     republishing what the failed attempts had stored (JetStream drops
//     the copies).
//   - A message republished after the duplicate window is stored twice:
//     resuming a halted relay long after its failed batch may do that.
//   - Metadata.Values are not relayed.
package jetstream
