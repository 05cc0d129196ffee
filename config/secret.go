package config

import "github.com/setrelay/setrelay/secret"

// Secret is a credential read from the configuration (a client secret, a
// static Authorization header, a NATS password or token). It is the secret
// package's Value, which redacts itself in every printed or encoded form, so
// a Config can be logged or dumped without leaking it; the alias lets
// programs that build a Config in code write config.Secret("...").
type Secret = secret.Value
