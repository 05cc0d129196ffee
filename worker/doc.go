// Package worker is setrelay's delivery engine: a bounded pool that serves
// every receiver's durable JetStream consumer, turns each intent into a
// signed SET, pushes it, and settles the message with exactly one of ack,
// skip, nak-with-delay, hand-back (a nak that does not count as an attempt),
// dead-letter-then-term, or block (the receiver's configuration is wrong).
//
// The rules that decide between those live in one pure function, [Settle],
// over the [Facts] handle gathers; one apply carries its [Action] out.
// Everything else in the package is plumbing around it.
//
// # Consuming
//
// The pool has Concurrency slots shared by all receivers. Each receiver has
// one fetch loop that takes a slot before it asks the server for anything,
// grabs more of the free slots without waiting (twice what its last request
// brought, up to its fair share; none after an empty one), and asks for
// exactly that many messages in one pull request that waits up to
// FetchWait. Each message goes to a worker, which holds its slot, as soon
// as it arrives, not when the batch is complete, and the slots a batch
// ended short of are released when it ends. So a backlog drains in full
// batches, a steady trickle costs one pull request per batch rather than
// per message, an idle receiver ties up one slot, and no message sits in a
// client-side buffer while its AckWait runs down (unlike Consume's default
// 500-message pre-fetch). Slow pushes send InProgress every AckWait/3.
//
// # Per message
//
// Decode and validate (an invalid intent is dead-lettered at once, reason
// invalid_intent), skip receivers that did not ask for the event type, build
// the claims with iat = the time JetStream stored the intent (so a
// redelivery re-signs identical claims under the same jti), sign, wait for
// the receiver's rate limit, push, [Settle], apply. A dead letter is stored and
// acknowledged by the DLQ stream before the message is Termed.
//
// # Outages
//
// A receiver that is down (PausePolicy: Threshold failures in a row and a
// low success ratio over a sliding window) has its consumer paused on the
// server (all processes stop delivering to it) for a cool-down that doubles
// while it stays down, and is probed every ProbeInterval by one process.
// Messages waiting out the pause keep their attempts; see outage.go for
// exactly how. A receiver the relay is misconfigured for is blocked the
// same way until a probe with its re-read files gets through (blocked.go).
//
// # Shutdown
//
// Cancelling Run's context stops the pulling; in-flight messages get
// GracePeriod to finish on a context of their own, and whatever is left is
// handed back with Nak. Run then returns, and the caller drains the NATS
// connection.
//
// The package depends on small interfaces it defines itself ([Pusher],
// [Signer]); the concrete push.Client and signer.Signer satisfy them.
package worker
