package natsauth

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// allowed mirrors how nats-server evaluates a publish or subscribe: the
// subject must match an allow entry and no deny entry.
func allowed(p *SubjectPermission, subject string) bool {
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool {
			return server.SubjectMatchesFilter(subject, f)
		})
	}
	return match(p.Allow) && !match(p.Deny)
}

// Subjects as nats.go's jetstream package (v1.55) and nats-server build them.
var readerAllowed = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.LICENSES",
	"$JS.API.STREAM.MSG.GET.LICENSES",
	"$JS.API.DIRECT.GET.LICENSES",
	"$JS.API.DIRECT.GET.LICENSES.licenses.org.acme",
	"$JS.API.CONSUMER.CREATE.LICENSES",
	"$JS.API.CONSUMER.CREATE.LICENSES.projector",
	"$JS.API.CONSUMER.CREATE.LICENSES.projector.licenses.org.*",
	"$JS.API.CONSUMER.INFO.LICENSES.projector",
	"$JS.API.CONSUMER.DELETE.LICENSES.projector",
	"$JS.API.CONSUMER.MSG.NEXT.LICENSES.projector",
	"$JS.ACK.LICENSES.projector.1.2.2.1700000000000000000.0",
	"$JS.ACK._.hash.LICENSES.projector.1.2.2.1700000000000000000.0",
	"$JS.FC.LICENSES.projector.abcd",
}

var readerDenied = []string{
	"licenses.org.acme",
	"licenses.audit.acme",
	"$JS.API.STREAM.CREATE.LICENSES",
	"$JS.API.STREAM.UPDATE.LICENSES",
	"$JS.API.STREAM.DELETE.LICENSES",
	"$JS.API.STREAM.PURGE.LICENSES",
	"$JS.API.STREAM.MSG.DELETE.LICENSES",
	"$JS.API.STREAM.SNAPSHOT.LICENSES",
	"$JS.API.CONSUMER.DURABLE.CREATE.LICENSES.projector",
	"$JS.API.STREAM.INFO.OTHER",
	"$JS.API.DIRECT.GET.OTHER",
	"$JS.API.CONSUMER.CREATE.OTHER.x",
	"$JS.API.CONSUMER.MSG.NEXT.OTHER.x",
	"$JS.ACK.OTHER.c.1.2.2.1.0",
	"$JS.API.META.LEADER.STEPDOWN",
	"$JS.API.STREAM.LEADER.STEPDOWN.LICENSES",
	"orders.created",
	"_INBOX.abc",
}

func TestReaderPublish(t *testing.T) {
	p, err := RolePermissions(RoleReader, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range readerAllowed {
		if !allowed(p.Publish, s) {
			t.Errorf("reader cannot publish %s", s)
		}
	}
	for _, s := range readerDenied {
		if allowed(p.Publish, s) {
			t.Errorf("reader may publish %s", s)
		}
	}
}

// The running ledger appends and reads, and may not change the stream's
// configuration: a limit set with its credentials would drop history.
func TestLedgerPublish(t *testing.T) {
	p, err := RolePermissions(RoleLedger, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	ok := append([]string{
		"licenses.org.acme",
		"licenses.audit.acme",
		"$JS.API.STREAM.SNAPSHOT.LICENSES",
		"$JS.SNAPSHOT.ACK.LICENSES.x.1.1",
	}, readerAllowed...)
	for _, s := range ok {
		if !allowed(p.Publish, s) {
			t.Errorf("ledger cannot publish %s", s)
		}
	}
	denied := []string{
		"$JS.API.STREAM.CREATE.LICENSES",
		"$JS.API.STREAM.UPDATE.LICENSES",
		"$JS.API.STREAM.DELETE.LICENSES",
		"$JS.API.STREAM.PURGE.LICENSES",
		"$JS.API.STREAM.MSG.DELETE.LICENSES",
		"$JS.API.STREAM.RESTORE.LICENSES",
		"$JS.API.CONSUMER.DURABLE.CREATE.LICENSES.x",
		"$JS.API.STREAM.SNAPSHOT.OTHER",
		"$JS.API.STREAM.CREATE.OTHER",
		"$JS.API.STREAM.UPDATE.OTHER",
		"$JS.API.CONSUMER.CREATE.OTHER.x",
		"orders.created",
	}
	for _, s := range denied {
		if allowed(p.Publish, s) {
			t.Errorf("ledger may publish %s", s)
		}
	}
}

// The stream administrator may do what the ledger may, and create and
// update the stream; never delete or purge it.
func TestAdminPublish(t *testing.T) {
	p, err := RolePermissions(RoleAdmin, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	ok := append([]string{
		"$JS.API.STREAM.CREATE.LICENSES",
		"$JS.API.STREAM.UPDATE.LICENSES",
		"licenses.org.acme",
		"$JS.API.STREAM.SNAPSHOT.LICENSES",
	}, readerAllowed...)
	for _, s := range ok {
		if !allowed(p.Publish, s) {
			t.Errorf("admin cannot publish %s", s)
		}
	}
	for _, s := range []string{
		"$JS.API.STREAM.DELETE.LICENSES",
		"$JS.API.STREAM.PURGE.LICENSES",
		"$JS.API.STREAM.MSG.DELETE.LICENSES",
		"$JS.API.STREAM.RESTORE.LICENSES",
		"$JS.API.STREAM.CREATE.OTHER",
		"$JS.API.STREAM.UPDATE.OTHER",
	} {
		if allowed(p.Publish, s) {
			t.Errorf("admin may publish %s", s)
		}
	}
}

// Each identity subscribes only to its own inbox prefix: the reader cannot
// see the ledger's publish acknowledgements, nor the ledger the reader's.
func TestSubscribeOnlyOwnInbox(t *testing.T) {
	for _, role := range Roles() {
		p, err := RolePermissions(role, "")
		if err != nil {
			t.Fatal(err)
		}
		if !allowed(p.Subscribe, InboxPrefix(role)+".abc.def") {
			t.Errorf("%s cannot subscribe to its inbox %s", role, InboxPrefix(role))
		}
		denied := []string{"_INBOX.>", "_INBOX.abc", "_INBOX.*.abc", InboxPrefix(role), "licenses.org.acme", "$JS.API.INFO", "$SYS.REQ.SERVER.PING"}
		for _, other := range Roles() {
			if other != role {
				denied = append(denied, InboxPrefix(other)+".abc.def", InboxSubjects(other))
			}
		}
		for _, s := range denied {
			if allowed(p.Subscribe, s) {
				t.Errorf("%s may subscribe to %s", role, s)
			}
		}
	}
}

func TestCustomStream(t *testing.T) {
	for _, role := range Roles() {
		p, err := RolePermissions(role, "ORDERS")
		if err != nil {
			t.Fatal(err)
		}
		if !allowed(p.Publish, "$JS.API.CONSUMER.MSG.NEXT.ORDERS.c") {
			t.Errorf("%s: consumer next on ORDERS not allowed", role)
		}
		if allowed(p.Publish, "$JS.API.STREAM.INFO.LICENSES") {
			t.Errorf("%s: still allowed on LICENSES", role)
		}
	}
}

func TestPermissionsRejectsBadInput(t *testing.T) {
	if _, err := RolePermissions("root", ""); err == nil {
		t.Error("unknown role accepted")
	}
	for _, stream := range []string{"A.B", "A*", "A>", "A B"} {
		if _, err := RolePermissions(RoleReader, stream); err == nil || !strings.Contains(err.Error(), "stream") {
			t.Errorf("stream %q: err = %v", stream, err)
		}
	}
}
