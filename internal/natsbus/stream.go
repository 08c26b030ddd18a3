// Package natsbus is the NATS JetStream client adapter: it connects (to
// the embedded server of package natsembed or an external cluster),
// provisions and checks the LICENSES stream, appends events with
// per-subject optimistic concurrency, and reads them back. It maps
// JetStream's errors to the event store errors of package events. It links
// no NATS server: the gatekeeper and the CLI clients use it.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
)

// DefaultStream is the default stream name (LICENSE_STREAM).
const DefaultStream = "LICENSES"

// StreamSubjects are the subjects the stream captures.
var StreamSubjects = []string{"licenses.org.*", "licenses.audit.*"}

// MaxConsumers bounds the consumers the stream holds at once. Every
// process keeps one ordered consumer (a gatekeeper, a ledger, a
// projector, replay); the bound leaves room for hundreds of them and keeps
// a reader's credentials from exhausting the server.
const MaxConsumers = 1000

// ConsumerInactiveThreshold is the stream's consumer limit: the server
// removes any consumer, durable or not, that nobody has used for this long,
// and refuses a consumer that asks for a longer threshold. It is nats.go's
// default for ordered consumers; a running client pulls every second.
const ConsumerInactiveThreshold = 5 * time.Minute

// StreamConfig is the exact configuration of the contract: file storage,
// limits retention with no limit set, discard new, a 2-minute duplicate
// window, deny delete and purge, direct get allowed, at most MaxConsumers
// consumers, each removed after ConsumerInactiveThreshold unused.
func StreamConfig(name string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "License events: the system of record of the license ledger",
		Subjects:          slices.Clone(StreamSubjects),
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      MaxConsumers,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       true,
		Replicas:          replicas,
		ConsumerLimits:    jetstream.StreamConsumerLimits{InactiveThreshold: ConsumerInactiveThreshold},
	}
}

// CheckConfig returns an error naming every way cfg departs from the
// contract in a way that could lose or rewrite history. Replicas and
// descriptions may differ.
func CheckConfig(cfg jetstream.StreamConfig) error {
	var bad []string
	add := func(cond bool, what string) {
		if cond {
			bad = append(bad, what)
		}
	}
	want := StreamConfig(cfg.Name, cfg.Replicas)
	add(!sameSubjects(cfg.Subjects, want.Subjects), fmt.Sprintf("subjects %v (want %v)", cfg.Subjects, want.Subjects))
	add(cfg.Storage != jetstream.FileStorage, "memory storage")
	add(cfg.Retention != jetstream.LimitsPolicy, "retention "+cfg.Retention.String())
	add(cfg.MaxMsgs > 0, fmt.Sprintf("max_msgs %d", cfg.MaxMsgs))
	add(cfg.MaxBytes > 0, fmt.Sprintf("max_bytes %d", cfg.MaxBytes))
	add(cfg.MaxAge > 0, fmt.Sprintf("max_age %s", cfg.MaxAge))
	add(cfg.MaxMsgsPerSubject > 0, fmt.Sprintf("max_msgs_per_subject %d", cfg.MaxMsgsPerSubject))
	add(cfg.Discard != jetstream.DiscardNew, "discard old")
	add(!cfg.DenyDelete, "deny_delete off")
	add(!cfg.DenyPurge, "deny_purge off")
	add(!cfg.AllowDirect, "allow_direct off")
	add(cfg.Sealed, "sealed")
	add(cfg.AllowMsgTTL, "per-message TTL allowed")
	add(cfg.AllowRollup, "rollup allowed")
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("stream %s is not safe to keep licenses in: %v; restore the contract's configuration with ledger stream apply "+
		"(the stream administrator's credentials), or use another LICENSE_STREAM", cfg.Name, bad)
}

func sameSubjects(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// StreamInfo is what readers remember of the stream.
type StreamInfo = events.StreamInfo

func infoOf(si *jetstream.StreamInfo) StreamInfo {
	return StreamInfo{Name: si.Config.Name, Created: si.Created, LastSeq: si.State.LastSeq,
		FirstSeq: si.State.FirstSeq, Replicas: si.Config.Replicas}
}

// EnsureStream creates the stream with the contract's configuration, or
// checks an existing one and refuses it when a limit is set or a protection
// is off. It never updates an existing stream. Creating needs the stream
// administrator's rights (natsauth.RoleAdmin): other credentials get an
// error saying so at once, rather than a timeout.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, replicas int) (jetstream.Stream, StreamInfo, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = RetryPlacement(ctx, func() error {
			var err error
			s, err = js.CreateStream(ctx, StreamConfig(name, replicas))
			return err
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, name)
		}
		if err != nil && denied(js.Conn(), "$JS.API.STREAM.CREATE."+name) {
			return nil, StreamInfo{}, fmt.Errorf("stream %s does not exist, and these NATS credentials may not create it: %w (%s)",
				name, nats.ErrPermissionViolation, createHint)
		}
	}
	if err != nil {
		return nil, StreamInfo{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	si, err := s.Info(ctx)
	if err != nil {
		return nil, StreamInfo{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	if err := CheckConfig(si.Config); err != nil {
		return nil, StreamInfo{}, err
	}
	return s, infoOf(si), nil
}

// createHint says who creates the stream.
const createHint = "the stream administrator creates it: ledger stream apply with its credentials, NATS_NKEY=admin.nk"

// denied reports whether the connection's last error is the server
// refusing a publish to subject.
func denied(nc *nats.Conn, subject string) bool {
	le := nc.LastError()
	return le != nil && errors.Is(le, nats.ErrPermissionViolation) &&
		strings.Contains(le.Error(), `Publish to "`+subject+`"`)
}

// wrapUnavailable marks transport failures as events.ErrUnavailable.
func wrapUnavailable(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code != 503 {
		return err
	}
	return fmt.Errorf("%w: %v", events.ErrUnavailable, err)
}
