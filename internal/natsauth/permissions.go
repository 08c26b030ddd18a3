// Package natsauth defines the NATS identities of the ledger and the subject
// permissions each one is granted.
//
// Two nkey users exist. The ledger user owns the LICENSES stream: it appends
// events and manages the stream configuration. The reader user is shared by
// the gatekeeper, the projector and replay tooling: it can consume and fetch
// messages but can neither append events nor alter, purge or delete the
// stream. Seeds live in $DATA_DIR/nats/ledger.nk and $DATA_DIR/nats/reader.nk
// (see LoadOrCreateSeeds) and the server side is configured with ServerUsers.
package natsauth

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Role names a NATS identity of the ledger.
type Role string

const (
	// RoleLedger may append events and create or update the stream.
	RoleLedger Role = "ledger"
	// RoleReader may only read the stream.
	RoleReader Role = "reader"
)

// DefaultStream is the stream holding license events.
const DefaultStream = "LICENSES"

// EventSubjects is the subject space of the license events.
const EventSubjects = "licenses.>"

// InboxSubjects is where request replies and pulled messages are delivered;
// nats.go uses the _INBOX prefix unless told otherwise.
const InboxSubjects = "_INBOX.>"

// Roles lists every known role.
func Roles() []Role { return []Role{RoleLedger, RoleReader} }

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleLedger || r == RoleReader }

// Permissions returns the server-side permissions of role on stream (empty
// means DefaultStream). Unknown roles and malformed stream names are errors
// rather than an empty permission set, because nil permissions would grant
// everything.
func Permissions(role Role, stream string) (*server.Permissions, error) {
	stream, err := streamName(stream)
	if err != nil {
		return nil, err
	}
	switch role {
	case RoleLedger:
		return ledgerPermissions(stream), nil
	case RoleReader:
		return readerPermissions(stream), nil
	}
	return nil, fmt.Errorf("natsauth: unknown role %q", role)
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

func ledgerPermissions(stream string) *server.Permissions {
	allow := []string{
		EventSubjects,
		"$JS.API.STREAM.CREATE." + stream,
		"$JS.API.STREAM.UPDATE." + stream,
		// ledger backup: the snapshot API and its flow-control acks.
		"$JS.API.STREAM.SNAPSHOT." + stream,
		"$JS.SNAPSHOT.ACK." + stream + ".>",
	}
	allow = append(allow, readSubjects(stream)...)
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: allow,
			Deny:  destructiveSubjects(),
		},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxSubjects}},
	}
}

func readerPermissions(stream string) *server.Permissions {
	// Explicit denies keep the reader read-only even if the allow list is
	// widened later: a deny always wins over an allow in nats-server.
	deny := append([]string{
		EventSubjects,
		"$JS.API.STREAM.CREATE.>",
		"$JS.API.STREAM.UPDATE.>",
	}, destructiveSubjects()...)
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: readSubjects(stream),
			Deny:  deny,
		},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxSubjects}},
	}
}

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
// by nats.go's jetstream package (pull and ordered consumers, GetMsg with and
// without AllowDirect) and by the legacy JetStreamContext API.
func readSubjects(stream string) []string {
	return []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		// Last message by subject puts the subject after the stream name.
		"$JS.API.DIRECT.GET." + stream + ".>",
		// Legacy form without a consumer name.
		"$JS.API.CONSUMER.CREATE." + stream,
		// <consumer> or <consumer>.<filter subject>; filters have several tokens.
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".*",
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
