package config

import (
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/worker"
)

// The methods below translate the configuration into each package's own
// configuration type, so those packages need not know about YAML and the
// relay's assembly reads as a list of steps.

// Queue returns the queue package's configuration. The NATS_* environment
// overrides other than NATS_URL (which Load applied) are left to
// queue.Config.ApplyEnv.
func (c *Config) Queue() queue.Config {
	n := c.NATS
	return queue.Config{
		URL:           n.URL,
		StoreDir:      n.StoreDir,
		Listen:        n.Listen,
		ServerConfig:  n.ServerConfig,
		Replicas:      n.Replicas,
		Creds:         n.Creds,
		NKey:          n.NKey,
		User:          n.User,
		Password:      n.Password,
		Token:         n.Token,
		CA:            n.TLS.CA,
		Cert:          n.TLS.Cert,
		Key:           n.TLS.Key,
		MaxAckPending: n.MaxAckPending,
		AckWait:       n.AckWait,

		DuplicateWindow: n.DuplicateWindow,
		Ordered:         c.orderedPartitions(),
	}
}

// orderedPartitions maps each receiver with ordering: subject to its
// partition count, or is nil when there is none.
func (c *Config) orderedPartitions() map[string]int {
	var out map[string]int
	for _, r := range c.Receivers {
		if !r.Ordered() {
			continue
		}
		if out == nil {
			out = map[string]int{}
		}
		out[r.Name] = r.PartitionCount()
	}
	return out
}

// PartitionCount is an ordered receiver's partition count, defaulted.
func (r Receiver) PartitionCount() int {
	if r.Partitions == 0 {
		return queue.DefaultPartitions
	}
	return r.Partitions
}

// ReceiverNames lists the receivers' names, in configuration order, for
// queue.Provision.
func (c *Config) ReceiverNames() []string {
	out := make([]string, len(c.Receivers))
	for i, r := range c.Receivers {
		out[i] = r.Name
	}
	return out
}

// Push returns the push client's configuration for this receiver.
func (r Receiver) Push() push.Config {
	return push.Config{
		Name:     r.Name,
		Endpoint: r.Endpoint,
		Auth: push.AuthConfig{
			TokenURL:            r.Auth.TokenURL,
			ClientID:            r.Auth.ClientID,
			ClientSecret:        r.Auth.ClientSecret,
			Scopes:              r.Auth.Scopes,
			AuthStyle:           r.Auth.AuthStyle,
			AuthorizationHeader: r.Auth.AuthorizationHeader,
		},
		InsecureHTTP:   r.InsecureHTTP,
		ConnectTimeout: r.ConnectTimeout,
		Timeout:        r.Timeout,
		MaxRetryAfter:  r.MaxRetryAfter,
		TLS:            push.TLSConfig{CAFile: r.TLS.CA, CertFile: r.TLS.Cert, KeyFile: r.TLS.Key},
		MaxConns:       r.MaxConns,
	}
}

// Profile returns how this receiver's SET claims are shaped.
func (r Receiver) Profile(issuer string) set.Profile {
	return set.Profile{
		Receiver:        r.Name,
		Issuer:          issuer,
		Audience:        append([]string(nil), r.Audience...),
		AudienceAsArray: r.AudienceAsArray,
		Placement:       set.Placement(r.Subject),
	}
}

// RetryPolicy returns the receiver's retry policy for the worker.
func (r Receiver) RetryPolicy() worker.RetryPolicy {
	return worker.RetryPolicy{
		Initial:     r.Retry.Initial,
		Max:         r.Retry.Max,
		MaxAttempts: r.Retry.MaxAttempts,
		MaxAge:      r.Retry.MaxAge,
	}
}

// PausePolicy returns when the worker pauses this receiver's consumer.
func (r Receiver) PausePolicy() worker.PausePolicy {
	return worker.PausePolicy{Threshold: r.Pause.Threshold, Initial: r.Pause.Initial, Max: r.Pause.Max, ProbeInterval: r.Pause.ProbeInterval}
}

// WorkerSpec returns the configuration-derived part of the worker's
// receiver; the caller adds the consumer, signer, pusher and rate limiter,
// which are live objects.
func (c *Config) WorkerSpec(r Receiver) worker.Receiver {
	return worker.Receiver{
		Name:    r.Name,
		Profile: r.Profile(c.Issuer),
		SendKID: r.KID(),
		Types:   r.EventTypes(),
		Retry:   r.RetryPolicy(),
		Pause:   r.PausePolicy(),

		AllowPrivateTypes: r.AllowPrivateTypes,
		HoldOnDeadLetter:  r.Ordered() && r.OnDeadLetter == DeadLetterHold,
	}
}

// Pool returns the worker pool's configuration without receivers. Intents
// are decoded with private event types allowed when any receiver allows
// them; the worker skips them for the receivers that did not.
func (c *Config) Pool() worker.Config {
	grace := c.Worker.GracePeriod
	if grace == 0 {
		// The worker reads 0 as "default"; an explicit 0s here means none.
		grace = -time.Nanosecond
	}
	return worker.Config{
		Concurrency: c.Worker.Concurrency,
		GracePeriod: grace,
		AckWait:     c.NATS.AckWait,
		FetchWait:   c.Worker.FetchWait,
		Intent:      intent.Options{AllowPrivateTypes: c.AllowsPrivateTypes()},
	}
}

// AllowsPrivateTypes reports whether any receiver accepts private event
// types, and so whether producers and the worker must accept them.
func (c *Config) AllowsPrivateTypes() bool {
	for _, r := range c.Receivers {
		if r.AllowPrivateTypes {
			return true
		}
	}
	return false
}
