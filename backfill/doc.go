// Package backfill streams a file of newline-delimited intents (NDJSON) into
// the setrelay queue: it validates each line with intent.Decode, publishes the
// valid ones asynchronously through a bounded queue.BatchPublisher window,
// writes the invalid ones with their line numbers to a rejects file, and keeps
// a checkpoint so that an interrupted run can resume where it stopped.
//
// Memory stays flat whatever the file size: the file is read line by line
// (one line is at most intent.MaxSize bytes; a longer line is rejected, not
// loaded), and at most Options.Window publishes are held awaiting their acks.
//
// # Checkpoints and exactly-once storage
//
// The checkpoint records the byte offset and line number before the lowest
// line whose publish has not yet been acknowledged by JetStream (rejected
// lines count as settled once their record is flushed to the rejects file).
// Everything before the checkpoint is stored or rejected; lines after it may
// or may not have been stored. Resuming therefore re-publishes up to a
// window's worth of intents that were already stored. That is safe because
// every intent is published with Nats-Msg-Id set to its id, and JetStream
// drops a message whose id it stored within the stream's duplicate window
// (queue.DefaultDuplicateWindow, 1 h, nats.duplicate_window): the publish is
// acknowledged as a duplicate and nothing new reaches the receivers.
//
// # Beyond the duplicate window
//
// JetStream remembers ids only for the duplicate window. Re-running a backfill
// (or resuming one) later than that after the first publish of an intent
// stores the intent again, and every receiver that requested its type gets the
// SET again. Because the jti is derived deterministically from the intent id
// and the receiver (set.JTI), the second SET carries the SAME jti as the first.
// RFC 8935 section 2 (and RFC 8417 section 2.2) makes the jti the SET's
// unique identifier, and receivers are expected to recognise a SET they have
// already accepted by it and treat the second delivery as a duplicate of the
// first, not as a second event. Receivers that do not deduplicate by jti will
// act on the event twice, so do not re-run a completed backfill after the
// window; resume an interrupted one within it, or raise the window (it costs
// server memory: roughly 100 bytes plus the id's length per intent in the
// window).
package backfill
