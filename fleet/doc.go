// Package fleet makes a receiver's rate_limit and max_in_flight hold across
// every `setrelay run` process that shares a NATS cluster.
//
// The processes coordinate through a JetStream key-value bucket,
// SETRELAY_FLEET, whose entries expire after the bucket's TTL. Each live
// process (a Member) keeps one entry fresh with a heartbeat, and each
// heartbeat it reads every entry, divides each limit by the fleet size and
// applies its share to local limiters: a token bucket per receiver for
// rate_limit (RateLimiter) and a resizable semaphore for max_in_flight (Gate).
// A push never waits on NATS: only the shares come from the bucket.
//
// Rebalancing never lets the sum of the shares exceed the limit:
//
//   - A member advertises, in its entry, the membership it has applied (its
//     view): it writes a view only after its limiters are at or below the
//     share of that view, in-flight pushes included.
//   - A member takes a share only once every other live entry's view lists
//     it. A joiner therefore pushes nothing until the others have shrunk.
//   - The fleet size a member divides by is the largest of its own view and
//     every advertised view, so a member grows only after everybody has
//     stopped counting a departed member.
//   - max_in_flight's remainder (8 over 3 members: 3, 3, 2) is handed out
//     only when every view agrees; otherwise every member takes the floor.
//   - A member that leaves cleanly deletes its entry; one that is killed is
//     counted until its entry expires (the TTL), so its share is reclaimed
//     only after it can no longer be pushing.
//
// A member that cannot read the bucket keeps at most the limit divided by
// the last fleet size it saw (and never more than half the limit for a fleet
// it last saw alone: an unseen process may have joined), until the bucket
// answers again. It still writes its entry every heartbeat, so the others
// keep counting it. A member that cannot write its entry either pushes
// nothing from two heartbeats before that entry could expire: the others,
// no longer seeing it, then divide the whole limit among themselves.
package fleet
