// Package jetstream relays mire's log and outbox to NATS JetStream, once
// each into the broker and in the order of each stream, and helps other Go
// services consume what it publishes.
//
// It is a Go module of its own (github.com/mire-go/mire/jetstream), so
// that the core module pulls no NATS code.
package jetstream
