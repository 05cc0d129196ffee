//go:build tools

// Package localkms pins the version of the local-kms AWS KMS emulator that
// setrelay's KMS tests build and start. It is a module of its own so the
// emulator's dependencies stay out of setrelay's go.mod; the tests build it
// with `go build github.com/nsmithuk/local-kms` from this directory.
package localkms

import _ "github.com/nsmithuk/local-kms"
