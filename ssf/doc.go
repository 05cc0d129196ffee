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
//
// Stream subjects (§8.1.3) live in SubjectsBucket, never loaded as a
// whole: a record per (stream, subject), and for complex subjects a match
// index of projections counted per shape, which answers §8.1.3.1 in both
// directions with one look-up per subset of an event's members. A change
// writes the record and the counts it moves in one JetStream atomic batch
// with compare-and-set on every key, so the counts stay exact across
// processes, retries and crashes (subjectindex.go).
package ssf
