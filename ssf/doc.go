// Package ssf is setrelay's Shared Signals Framework 1.0 transmitter
// surface: the Transmitter Configuration Metadata (§6), the stream
// management API (§8.1: configuration, status, subjects, verification),
// RFC 8936 poll delivery, and the dispatcher that pushes to streams
// receivers create at run time.
//
// Streams live in a replicated JetStream key-value bucket (StreamsBucket),
// one key per stream id, changed only with compare-and-set on the entry's
// revision so that several setrelay processes can serve the API at once.
// Each stream owns a durable consumer of the intents stream, named like a
// configured receiver's ("rcv_ssf-<stream id>"), so a stream is delivered
// to by the same machinery as a configured receiver: push streams by a
// worker.Pool, poll streams by the poll endpoint pulling from the consumer.
//
// Stream status maps onto the consumer: "paused" pauses it on the server
// (events are held and delivered in stored order after re-enabling);
// "disabled" deletes it, so nothing is held, and re-enabling creates a new
// one that starts with the next event published.
package ssf
