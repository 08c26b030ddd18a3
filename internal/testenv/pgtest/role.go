package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// LoginRole creates a LOGIN user granted the roles in grants, dropped when
// the test ends, and returns a DSN connecting as it to superDSN's database.
func LoginRole(t testing.TB, superDSN string, grants ...string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name, password := "ledger_test_login_"+hex.EncodeToString(b), hex.EncodeToString(b)+"pw"
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if _, err := conn.Exec(ctx, "GRANT "+pgx.Identifier{g}.Sanitize()+" TO "+ident); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), superDSN)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP OWNED BY "+ident)
		c.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident)
	})
	if strings.HasPrefix(superDSN, "postgres://") || strings.HasPrefix(superDSN, "postgresql://") {
		u, err := url.Parse(superDSN)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(name, password)
		return u.String()
	}
	return superDSN + " user=" + name + " password=" + password
}
