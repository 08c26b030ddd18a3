package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
)

// Drift returns every setting of actual that differs from the contract's
// configuration (StreamConfig(actual.Name, replicas)), in a fixed order,
// each with the contract's value and the stream's: limits (max_msgs,
// max_bytes, max_age, max_msgs_per_subject, max_msg_size), retention,
// discard, storage, subjects, the protections (deny_delete, deny_purge,
// sealed, allow_rollup_hdrs, allow_msg_ttl), allow_direct, the duplicate
// window, num_replicas and the consumer bounds (max_consumers,
// consumer_limits.inactive_threshold). Limits the server reads as
// "unlimited" compare equal however they are written (0 or -1). The
// description is not compared.
func Drift(actual jetstream.StreamConfig, replicas int) []events.ConfigField {
	want := StreamConfig(actual.Name, replicas)
	var out []events.ConfigField
	add := func(field, expected, got string) {
		if expected != got {
			out = append(out, events.ConfigField{Field: field, Expected: expected, Actual: got})
		}
	}
	add("subjects", subjectList(want.Subjects), subjectList(actual.Subjects))
	add("storage", want.Storage.String(), actual.Storage.String())
	add("retention", want.Retention.String(), actual.Retention.String())
	add("discard", want.Discard.String(), actual.Discard.String())
	add("max_msgs", limit(want.MaxMsgs), limit(actual.MaxMsgs))
	add("max_bytes", limit(want.MaxBytes), limit(actual.MaxBytes))
	add("max_age", duration(want.MaxAge), duration(actual.MaxAge))
	add("max_msgs_per_subject", limit(want.MaxMsgsPerSubject), limit(actual.MaxMsgsPerSubject))
	add("max_msg_size", limit(int64(want.MaxMsgSize)), limit(int64(actual.MaxMsgSize)))
	add("deny_delete", strconv.FormatBool(want.DenyDelete), strconv.FormatBool(actual.DenyDelete))
	add("deny_purge", strconv.FormatBool(want.DenyPurge), strconv.FormatBool(actual.DenyPurge))
	add("sealed", strconv.FormatBool(want.Sealed), strconv.FormatBool(actual.Sealed))
	add("allow_rollup_hdrs", strconv.FormatBool(want.AllowRollup), strconv.FormatBool(actual.AllowRollup))
	add("allow_msg_ttl", strconv.FormatBool(want.AllowMsgTTL), strconv.FormatBool(actual.AllowMsgTTL))
	add("allow_direct", strconv.FormatBool(want.AllowDirect), strconv.FormatBool(actual.AllowDirect))
	add("duplicate_window", duration(want.Duplicates), duration(actual.Duplicates))
	add("num_replicas", strconv.Itoa(want.Replicas), strconv.Itoa(max(actual.Replicas, 1)))
	add("max_consumers", limit(int64(want.MaxConsumers)), limit(int64(actual.MaxConsumers)))
	add("consumer_limits.inactive_threshold", duration(want.ConsumerLimits.InactiveThreshold), duration(actual.ConsumerLimits.InactiveThreshold))
	return out
}

// limit prints a limit; the server reads any value below 1 as none.
func limit(n int64) string {
	if n <= 0 {
		return "-1"
	}
	return strconv.FormatInt(n, 10)
}

// duration prints a duration; 0 is none.
func duration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.String()
}

func subjectList(s []string) string {
	s = slices.Clone(s)
	slices.Sort(s)
	return strings.Join(s, ",")
}

// upgrades are the settings earlier releases created differently, with the
// value they had. A stream that differs from the contract in these alone
// is an earlier release's, and the embedded server's bootstrap brings it
// up to date (ApplyStream with upgradeOnly).
var upgrades = map[string]string{
	"max_consumers":                      "-1",
	"consumer_limits.inactive_threshold": "0s",
}

// onlyUpgrades reports whether every field of drift is a setting an
// earlier release wrote, with that release's value.
func onlyUpgrades(drift []events.ConfigField) bool {
	for _, f := range drift {
		if old, ok := upgrades[f.Field]; !ok || old != f.Actual {
			return false
		}
	}
	return true
}

// applyTimeout bounds a create or update request. A refused one is never
// answered: the refusal is recognised when it times out.
const applyTimeout = 10 * time.Second

// placementPatience bounds how long a stream's creation or restore asks
// again while the cluster cannot place it yet.
const placementPatience = 15 * time.Second

// PlacementPending reports whether err is the JetStream API's answer of a
// cluster that cannot place a stream yet but may in a moment: no suitable
// peers (10005: a metadata leader just elected has not heard from every
// peer) or a cluster temporarily unavailable (10008). It knows nats.go's
// jetstream.APIError and any error that reports its code the way jsm.go's
// does (NatsErrorCode).
func PlacementPending(err error) bool {
	var code uint16
	var apiErr *jetstream.APIError
	var coded interface{ NatsErrorCode() uint16 }
	switch {
	case errors.As(err, &apiErr):
		code = uint16(apiErr.ErrorCode)
	case errors.As(err, &coded):
		code = coded.NatsErrorCode()
	default:
		return false
	}
	return code == 10005 || code == 10008
}

// RetryPlacement runs do until it returns an error other than
// PlacementPending, for at most placementPatience or ctx, backing off
// from 50 ms to 1 s. It returns do's last error.
func RetryPlacement(ctx context.Context, do func() error) error {
	deadline := time.Now().Add(placementPatience)
	for attempt := 0; ; attempt++ {
		err := do()
		if !PlacementPending(err) || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(50*time.Millisecond<<min(attempt, 5), time.Second)):
		}
	}
}

// ApplyResult says what ApplyStream did.
type ApplyResult struct {
	// Created: the stream did not exist and now has the contract's
	// configuration.
	Created bool
	// Changed are the settings ApplyStream updated, with the values they
	// had (Actual) and have now (Expected).
	Changed []events.ConfigField
	// Left are the settings that still differ from the contract: with
	// upgradeOnly, those that are not an earlier release's.
	Left []events.ConfigField
	Info StreamInfo
}

// ApplyStream gives stream name the contract's configuration
// (StreamConfig(name, replicas)): it creates the stream when it is missing
// and otherwise updates every setting that differs, reporting each. With
// upgradeOnly it updates an existing stream only when every difference is
// a setting an earlier release created differently (the embedded server's
// bootstrap, at start), and leaves any other difference for an operator to
// look into (Left).
//
// It needs the stream administrator's rights (natsauth.RoleAdmin). The
// server refuses some changes (storage, a protection switched off before);
// that error names them.
func (c *Conn) ApplyStream(ctx context.Context, name string, replicas int, upgradeOnly bool) (ApplyResult, error) {
	nc := c.nc
	js, err := jetstream.New(nc)
	if err != nil {
		return ApplyResult{}, err
	}
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = RetryPlacement(ctx, func() error {
			rctx, cancel := context.WithTimeout(ctx, applyTimeout)
			defer cancel()
			var err error
			s, err = js.CreateStream(rctx, StreamConfig(name, replicas))
			return err
		})
		if err == nil {
			return ApplyResult{Created: true, Info: infoOf(s.CachedInfo())}, nil
		}
		if denied(nc, "$JS.API.STREAM.CREATE."+name) {
			return ApplyResult{}, fmt.Errorf("create stream %s: %w: these are not the stream administrator's credentials (admin.nk)", name, nats.ErrPermissionViolation)
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return ApplyResult{}, fmt.Errorf("create stream %s: %w", name, wrapUnavailable(err))
		}
		s, err = js.Stream(ctx, name) // created meanwhile by another process
	}
	if err != nil {
		return ApplyResult{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	cur := s.CachedInfo()
	drift := Drift(cur.Config, replicas)
	res := ApplyResult{Info: infoOf(cur)}
	if len(drift) == 0 {
		return res, nil
	}
	if upgradeOnly && !onlyUpgrades(drift) {
		res.Left = drift
		return res, nil
	}
	cfg := StreamConfig(name, replicas)
	cfg.FirstSeq = cur.Config.FirstSeq // a reseeded stream's; not a setting of the contract
	rctx, cancel := context.WithTimeout(ctx, applyTimeout)
	s, err = js.UpdateStream(rctx, cfg)
	cancel()
	if err != nil {
		if denied(nc, "$JS.API.STREAM.UPDATE."+name) {
			return res, fmt.Errorf("update stream %s: %w: these are not the stream administrator's credentials (admin.nk)", name, nats.ErrPermissionViolation)
		}
		return res, fmt.Errorf("update stream %s (%s): %w", name, fieldList(drift), wrapUnavailable(err))
	}
	res.Info = infoOf(s.CachedInfo())
	res.Changed = drift
	res.Left = Drift(s.CachedInfo().Config, replicas)
	return res, nil
}

// fieldList is "field (expected E, actual A); …".
func fieldList(fields []events.ConfigField) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.String()
	}
	return strings.Join(parts, "; ")
}

// StreamDrift returns how stream name's configuration departs from the
// contract (Drift with replicas), as the server reports it now. A missing
// stream is an error wrapping ErrStreamNotFound. Any identity may ask.
func (c *Conn) StreamDrift(ctx context.Context, name string, replicas int) ([]events.ConfigField, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return Drift(s.CachedInfo().Config, replicas), nil
}

// ErrStreamNotFound is the stream missing on the server (StreamDrift, Open).
var ErrStreamNotFound = jetstream.ErrStreamNotFound

// Drift returns how the stream's configuration departs from the contract
// (see the package function Drift), as the server reports it now.
func (b *Bus) Drift(ctx context.Context, replicas int) ([]events.ConfigField, error) {
	si, err := b.stream.Info(ctx)
	if err != nil {
		return nil, wrapUnavailable(err)
	}
	return Drift(si.Config, replicas), nil
}
