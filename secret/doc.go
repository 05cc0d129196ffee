// Package secret is the one place that keeps credentials out of logs,
// errors, metrics and dead letters. It holds three things:
//
//   - [Value], the type every configured credential (client secret, static
//     Authorization header, NATS password or token) is kept in. It redacts
//     itself in every printed or encoded form.
//   - [URL] and [URLList], which hide a URL's user information and every
//     query and fragment value before the URL is echoed anywhere, and
//     [CredentialInQuery], which names the credential a URL carries in its
//     query so that configuration validation can refuse it.
//   - [Scrubber], which removes every form of a credential (as sent, JSON-
//     and URL-escaped) from text a remote party sent back, such as a
//     receiver's error body that echoes the request's Authorization header.
//
// Every other package calls these rather than redacting on its own, so that
// a fix here (a new escaping, a new credential parameter) covers them all.
package secret

// Redacted is what replaces a secret wherever it would otherwise be printed.
const Redacted = "[REDACTED]"
