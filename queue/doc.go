// Package queue is setrelay's JetStream layer: it starts or connects to NATS,
// provisions the intents and dead-letter streams with one durable consumer per
// receiver, publishes intents (one at a time or in bounded asynchronous
// batches) and operates on dead letters.
//
// A microservice publishes an intent in a few lines:
//
//	nc, err := queue.Connect(ctx, queue.Config{URL: "nats://nats:4222"}, log)
//	if err != nil { ... }
//	js, _ := jetstream.New(nc)
//	pub := queue.NewPublisher(js, intent.Options{})
//	ack, err := pub.Publish(queue.WithTraceparent(ctx, tp), &intent.Intent{
//		ID:      "7d0c6d8a-5f8e-4a7e-9a55-0f3c1d1b6b4e",
//		Type:    "caep.session-revoked",
//		Subject: map[string]any{"format": "email", "email": "a@example.com"},
//	})
//
// The intent id is the Nats-Msg-Id, so publishing the same intent twice within
// the stream's duplicate window stores it once and reports Duplicate.
//
// # Retention
//
// SETRELAY_INTENTS uses Interest retention with DiscardNew and no age limit: a
// message stays until every receiver consumer whose filter matches it has
// acknowledged (or terminated) it, and is never evicted by age or size. When
// the stream reaches MaxMsgs or MaxBytes, producers get ErrStreamFull instead
// of silent loss. Interest retention deletes a message that nobody is
// interested in at the moment it is stored, so Provision always creates the
// consumers together with the stream; a message published after provisioning
// but before any worker runs is kept for every receiver.
//
// Removing a receiver from the configuration does not delete its consumer:
// Provision logs it as orphaned, because deleting it would silently drop that
// receiver's backlog. An orphaned consumer holds messages in the stream until
// it is removed with DeleteReceiver (or `nats consumer rm`).
//
// # Delivery limits
//
// The worker dead-letters a message when its own attempt limit is reached.
// The consumer's MaxDeliver is only a safety net for a worker that cannot
// reach that decision (a crash loop, say). When the server hits it, it stops
// delivering the message and publishes a MAX_DELIVERIES advisory (see
// MaxDeliveriesAdvisorySubject); with Interest retention the message then
// stays in the stream, holding space, while the consumer's pending counts no
// longer show it. So set MaxDeliver well above the largest receiver
// max_attempts (shutdown hand-backs with Nak also count as deliveries) and
// alert on the advisory.
package queue
