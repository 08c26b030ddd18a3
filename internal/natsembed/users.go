package natsembed

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/licenseledger/ledger/internal/natsauth"
)

// Permissions returns role's permissions on stream (empty means
// natsauth.DefaultStream) in nats-server's form.
func Permissions(role natsauth.Role, stream string) (*server.Permissions, error) {
	p, err := natsauth.RolePermissions(role, stream)
	if err != nil {
		return nil, err
	}
	return &server.Permissions{Publish: subjects(p.Publish), Subscribe: subjects(p.Subscribe)}, nil
}

func subjects(p *natsauth.SubjectPermission) *server.SubjectPermission {
	if p == nil {
		return nil
	}
	return &server.SubjectPermission{Allow: p.Allow, Deny: p.Deny}
}

// ServerUsers returns the nkey users to put in server.Options.Nkeys, each
// restricted to its role's permissions on stream (empty means
// natsauth.DefaultStream).
func ServerUsers(stream string, ids ...natsauth.Identity) ([]*server.NkeyUser, error) {
	users := make([]*server.NkeyUser, 0, len(ids))
	for _, id := range ids {
		if !nkeys.IsValidPublicUserKey(id.PublicKey) {
			return nil, fmt.Errorf("natsauth: %s identity has invalid public key %q", id.Role, id.PublicKey)
		}
		perms, err := Permissions(id.Role, stream)
		if err != nil {
			return nil, err
		}
		users = append(users, &server.NkeyUser{Nkey: id.PublicKey, Permissions: perms})
	}
	return users, nil
}
