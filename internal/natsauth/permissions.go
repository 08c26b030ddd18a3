// Package natsauth defines the NATS identities of the ledger and the subject
// permissions each one is granted.
//
// Three nkey users exist. The ledger user appends events and reads the
// LICENSES stream; it may not change the stream's configuration. The reader
// user is shared by the gatekeeper, the projector and replay tooling: it can
// consume and fetch messages but can neither append events nor alter, purge
// or delete the stream, nor leave a durable consumer behind. The admin user
// is the stream administrator: it creates the stream and applies its
// configuration (ledger stream apply, and the embedded server's bootstrap
// at start), and may do what the ledger may. Nobody may delete or purge
// the stream or its messages.
//
// Each identity receives replies only on its own inbox prefix
// (InboxPrefix): one cannot read another's replies, such as the ledger's
// publish acknowledgements.
//
// Seeds live in $DATA_DIR/nats/ledger.nk, reader.nk and admin.nk (see
// LoadOrCreateSeeds). Permissions are plain subject lists: the package
// links no NATS server, so clients such as the gatekeeper can use it. The
// embedded server turns them into its own users (natsembed.ServerUsers).
package natsauth

import (
	"fmt"
	"strings"
)

// SubjectPermission lists the subjects a user may (Allow) and may not
// (Deny) use; a deny always wins. Its fields mirror nats-server's.
type SubjectPermission struct {
	Allow []string
	Deny  []string
}

// Permissions is what a user may publish and subscribe to.
type Permissions struct {
	Publish   *SubjectPermission
	Subscribe *SubjectPermission
}

// Role names a NATS identity of the ledger.
type Role string

const (
	// RoleLedger may append events and read the stream.
	RoleLedger Role = "ledger"
	// RoleReader may only read the stream.
	RoleReader Role = "reader"
	// RoleAdmin may create the stream and change its configuration, and do
	// what the ledger may.
	RoleAdmin Role = "admin"
)

// DefaultStream is the stream holding license events.
const DefaultStream = "LICENSES"

// EventSubjects is the subject space of the license events.
const EventSubjects = "licenses.>"

// Roles lists every known role.
func Roles() []Role { return []Role{RoleLedger, RoleReader, RoleAdmin} }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleLedger || r == RoleReader || r == RoleAdmin }

// InboxPrefix is the prefix of role's reply subjects, for
// nats.CustomInboxPrefix: _INBOX.ledger, _INBOX.reader, _INBOX.admin. Each
// identity may subscribe only below its own prefix (InboxSubjects).
func InboxPrefix(role Role) string { return "_INBOX." + string(role) }

// InboxSubjects is what role may subscribe to: its inbox prefix and
// everything below it.
func InboxSubjects(role Role) string { return InboxPrefix(role) + ".>" }

// RolePermissions returns the server-side permissions of role on stream (empty
// means DefaultStream). Unknown roles and malformed stream names are errors
// rather than an empty permission set, because nil permissions would grant
// everything.
func RolePermissions(role Role, stream string) (*Permissions, error) {
	stream, err := streamName(stream)
	if err != nil {
		return nil, err
	}
	var pub *SubjectPermission
	switch role {
	case RoleLedger:
		pub = ledgerPublish(stream)
	case RoleReader:
		pub = readerPublish(stream)
	case RoleAdmin:
		pub = adminPublish(stream)
	default:
		return nil, fmt.Errorf("natsauth: unknown role %q", role)
	}
	return &Permissions{
		Publish:   pub,
		Subscribe: &SubjectPermission{Allow: []string{InboxSubjects(role)}},
	}, nil
}

func streamName(stream string) (string, error) {
	if stream == "" {
		return DefaultStream, nil
	}
	// The name becomes a single subject token in every permission below.
	if strings.ContainsAny(stream, ".*> \t\r\n") {
		return "", fmt.Errorf("natsauth: invalid stream name %q", stream)
	}
	return stream, nil
}

// ledgerAllow is what the ledger may publish: events, the snapshot API
// (ledger backup) and every read.
func ledgerAllow(stream string) []string {
	allow := []string{
		EventSubjects,
		// ledger backup: the snapshot API and its flow-control acks.
		"$JS.API.STREAM.SNAPSHOT." + stream,
		"$JS.SNAPSHOT.ACK." + stream + ".>",
	}
	return append(allow, readSubjects(stream)...)
}

func ledgerPublish(stream string) *SubjectPermission {
	// The running ledger's credentials cannot change the stream: a limit
	// set by mistake or malice (max messages per subject, max age) makes
	// JetStream drop history at once. Explicit denies keep it so even if
	// the allow list is widened later: a deny always wins in nats-
	deny := append([]string{
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		durableCreate,
	}, destructiveSubjects()...)
	return &SubjectPermission{Allow: ledgerAllow(stream), Deny: deny}
}

func readerPublish(stream string) *SubjectPermission {
	deny := append([]string{
		EventSubjects,
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
		durableCreate,
	}, destructiveSubjects()...)
	return &SubjectPermission{Allow: readSubjects(stream), Deny: deny}
}

func adminPublish(stream string) *SubjectPermission {
	allow := append([]string{
		"$JS.API.STREAM.CREATE." + stream,
		"$JS.API.STREAM.UPDATE." + stream,
	}, ledgerAllow(stream)...)
	return &SubjectPermission{Allow: allow, Deny: destructiveSubjects()}
}

// durableCreate is the legacy API that creates durable consumers. The
// application uses ordered (ephemeral) consumers only; a durable created
// through the current API ($JS.API.CONSUMER.CREATE.<stream>.<name>, which
// ephemeral consumers use too) gets the stream's consumer inactivity limit
// and is removed by the server once unused.
const durableCreate = "$JS.API.CONSUMER.DURABLE.CREATE.>"

// destructiveSubjects may never be used by the application: the stream is an
// append-only ledger and removal is an operator task done with system
// credentials.
func destructiveSubjects() []string {
	return []string{
		"$JS.API.STREAM.DELETE.>",
		"$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.MSG.DELETE.>",
	}
}

// readSubjects is what consuming and fetching from stream requires, as used
// by nats.go's jetstream package (ordered consumers, GetMsg with and without
// AllowDirect) and by the legacy JetStreamContext API.
func readSubjects(stream string) []string {
	return []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		// Last message by subject puts the subject after the stream name.
		"$JS.API.DIRECT.GET." + stream + ".>",
		// Legacy form without a consumer name (ephemeral only).
		"$JS.API.CONSUMER.CREATE." + stream,
		// <consumer> or <consumer>.<filter subject>; filters have several tokens.
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.INFO." + stream + ".*",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
		// Acks and flow-control replies, in the v1 format
		// $JS.ACK.<stream>.<consumer>... used by default, and the v2 format
		// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>... that
		// nats-server may switch to (feature flag js_ack_fc_v2).
		"$JS.ACK." + stream + ".>",
		"$JS.ACK.*.*." + stream + ".>",
		"$JS.FC." + stream + ".>",
		"$JS.FC.*.*." + stream + ".>",
	}
}
