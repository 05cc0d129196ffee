package worker

import (
	"strings"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
)

// acceptsExtra reports whether r takes an extra event of type uri (an
// intent's extra_events key). Extra events follow the receiver's filter
// like main events, so an intent of a type r asked for cannot carry a
// signed event of a type r never asked for: never an SSF stream event;
// companion types (intent.IsCompanionType, GOV.UK's eventMetadata) always;
// otherwise a type r listed in its events; or, when r listed none, any
// catalogue or GOV.UK type, and a private type only with
// allow_private_types.
func (r *rcv) acceptsExtra(uri string) bool {
	if strings.HasPrefix(uri, intent.SSFPrefix) {
		// An SSF stream event (verification, stream-updated) is about a
		// stream: its sub_id must be the stream itself (SSF 1.0 §8.1.4.1,
		// §8.1.5), which no other event's SET has, and only the
		// transmitter sends it. A receiver that takes those events as main
		// events (an SSF stream lists them in Types) must not get one
		// riding in a producer's intent.
		return false
	}
	if intent.IsCompanionType(uri) {
		return true
	}
	if r.types != nil {
		_, ok := r.types[uri]
		return ok
	}
	if _, known := intent.ResolveType(uri); known {
		return true
	}
	return r.AllowPrivateTypes
}

// acceptedExtras returns in with only the extra events r accepts, so the
// SET built for r carries nothing r did not ask for. The intent is shared
// by every delivery attempt, so a filtered copy is returned and in is left
// alone; when r accepts every extra event, in itself is returned. Extra
// events left out are logged and counted: the main event is still
// delivered, since it is what r asked for, and dead-lettering it for an
// unwanted companion would withhold it. The choice is the same on every
// redelivery, so a redelivered SET keeps identical claims.
func (p *Pool) acceptedExtras(r *rcv, j *job, in *intent.Intent) *intent.Intent {
	var omitted []string
	for uri := range in.ExtraEvents {
		if !r.acceptsExtra(uri) {
			omitted = append(omitted, uri)
		}
	}
	if len(omitted) == 0 {
		return in
	}
	kept := make(map[string]map[string]any, len(in.ExtraEvents)-len(omitted))
	for uri, ev := range in.ExtraEvents {
		if r.acceptsExtra(uri) {
			kept[uri] = ev
		}
	}
	out := *in
	out.ExtraEvents = kept
	r.m.extraOmitted.Add(float64(len(omitted)))
	p.log.Info("extra events left out of the SET: the receiver did not ask for their types",
		zap.String("receiver", r.Name), zap.String("intent_id", in.ID), zap.Uint64("stream_seq", j.seq),
		zap.Strings("types", omitted))
	return &out
}
