// Package worker is setrelay's delivery engine: a bounded pool that serves
// every receiver's durable JetStream consumer, turns each intent into a
// signed SET, pushes it, and settles the message with exactly one of ack,
// nak-with-delay, or dead-letter-then-term.
//
// The rules that decide between those live in one pure function, [Decide].
// Everything else in the package is plumbing around it: pulling only as
// many messages as there are free slots (so nothing sits in a client buffer
// while its AckWait runs out), heartbeating slow pushes, pausing a consumer
// across all processes while its receiver is down, and shutting down
// without losing or double-settling anything.
//
// The package depends on small interfaces it defines itself ([Pusher],
// [Signer]); the concrete push.Client and signer.Signer satisfy them.
package worker
