// Package push delivers signed Security Event Tokens to one Shared Signals
// receiver over HTTP, as RFC 8935 describes, and says exactly what happened.
//
// A [Client] is built once per receiver and shared by every worker of the
// process: it owns the receiver's HTTP transport (sized to the worker count so
// connections are reused) and, when the receiver wants OAuth, the single
// client-credentials token that all workers present. [Client.Push] makes at
// most two HTTP attempts (the second only after the receiver refused the
// token) and returns a [Result] whose outcome is decided by [Classify], one
// pure function of the response. Retrying with backoff, dead-lettering and
// acknowledging are the caller's business; Push never loops.
//
// Secrets (the client secret, a static Authorization header and the access
// token) are held as [Secret] values or behind pointers, so they never show in
// logs, errors, metrics or fmt output.
package push
