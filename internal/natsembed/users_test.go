package natsembed

import (
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/licenseledger/ledger/internal/natsauth"
)

// allowed mirrors how nats-server evaluates a publish or subscribe: the
// subject must match an allow entry and no deny entry.
func allowed(p *server.SubjectPermission, subject string) bool {
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool {
			return server.SubjectMatchesFilter(subject, f)
		})
	}
	return match(p.Allow) && !match(p.Deny)
}

func TestServerUsers(t *testing.T) {
	ledger, err := natsauth.GenerateIdentity(natsauth.RoleLedger)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := natsauth.GenerateIdentity(natsauth.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	users, err := ServerUsers("", ledger, reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Nkey != ledger.PublicKey || users[1].Nkey != reader.PublicKey {
		t.Fatalf("users = %+v", users)
	}
	if allowed(users[1].Permissions.Publish, "licenses.org.acme") {
		t.Error("reader user got ledger permissions")
	}
	if !allowed(users[0].Permissions.Publish, "licenses.org.acme") {
		t.Error("ledger user cannot publish events")
	}

	bad := []natsauth.Identity{
		{Role: "root", PublicKey: ledger.PublicKey},
		{Role: natsauth.RoleReader, PublicKey: "not-a-key"},
		{Role: natsauth.RoleReader, PublicKey: string(ledger.Seed)},
	}
	for _, id := range bad {
		if _, err := ServerUsers("", id); err == nil {
			t.Errorf("ServerUsers accepted %+v", id)
		}
	}
}
