package config

// Defaults returns a Config with the top-level sections (nats, worker, ops,
// log) holding their defaults and nothing else. Load decodes the file over
// it, so an explicit zero (grace_period: 0s) is honoured rather than
// replaced. Programs that build a Config in code start from it, append
// keys and receivers, then call FillDefaults and Validate.
func Defaults() *Config {
	return &Config{
		NATS: NATS{
			StoreDir:      DefaultStoreDir,
			Listen:        DefaultNATSListen,
			Replicas:      DefaultReplicas,
			MaxAckPending: DefaultMaxAckPending,
			AckWait:       DefaultAckWait,

			DuplicateWindow: DefaultDuplicateWindow,
		},
		Worker: Worker{Concurrency: DefaultConcurrency, GracePeriod: DefaultGracePeriod, FetchWait: DefaultFetchWait},
		Ops:    Ops{Listen: DefaultOpsListen},
		Log:    Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// FillDefaults completes each receiver. List elements cannot be pre-filled
// before decoding, so here a zero value means "not set"; every field treated
// this way has no meaningful zero (a zero timeout or retry delay is never
// what an operator wants), except rate_limit, whose zero means unlimited.
func (c *Config) FillDefaults() {
	c.fillSSFDefaults()
	for i := range c.Receivers {
		r := &c.Receivers[i]
		if r.SendKID == nil {
			t := true
			r.SendKID = &t
		}
		if r.Subject == "" {
			r.Subject = DefaultSubjectPlacement
		}
		if r.Timeout == 0 {
			r.Timeout = DefaultTimeout
		}
		if r.ConnectTimeout == 0 {
			r.ConnectTimeout = min(DefaultConnectTimeout, r.Timeout)
		}
		if r.Retry.Initial == 0 {
			r.Retry.Initial = DefaultRetryInitial
		}
		if r.Retry.Max == 0 {
			r.Retry.Max = max(DefaultRetryMax, r.Retry.Initial)
		}
		if r.Retry.MaxAttempts == 0 {
			r.Retry.MaxAttempts = DefaultRetryMaxAttempts
		}
		if r.Retry.MaxAge == 0 {
			r.Retry.MaxAge = DefaultRetryMaxAge
		}
		if r.MaxRetryAfter == 0 {
			r.MaxRetryAfter = DefaultMaxRetryAfter
		}
		if r.Pause.Threshold == 0 {
			// Below max_attempts, so that an outage pauses the receiver
			// before one intent's attempts run out (see Validate).
			r.Pause.Threshold = max(1, min(DefaultPauseThreshold, r.Retry.MaxAttempts-1))
		}
		if r.Pause.Initial == 0 {
			r.Pause.Initial = DefaultPauseInitial
		}
		if r.Pause.Max == 0 {
			r.Pause.Max = max(DefaultPauseMax, r.Pause.Initial)
		}
		if r.Pause.ProbeInterval == 0 {
			r.Pause.ProbeInterval = min(DefaultProbeInterval, r.Pause.Initial)
		}
		if r.Auth.OAuth() && r.Auth.AuthStyle == "" {
			r.Auth.AuthStyle = DefaultAuthStyle
		}
	}
}
