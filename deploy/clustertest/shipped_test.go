package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// The words of the shipped files that a deployment (and these tests)
// replace. A test fails when one of them is no longer where it is expected.
const (
	placeholderLedgerKey = "NKEY_LEDGER_PUBLIC"
	placeholderReaderKey = "NKEY_READER_PUBLIC"
	placeholderAdminKey  = "NKEY_ADMIN_PUBLIC"
	placeholderBreakKey  = "NKEY_BREAKGLASS_PUBLIC"
	placeholderRoutePass = "ROUTE_PASSWORD"
	shippedStoreDir      = `"/var/lib/nats/licenses"`
	shippedMonitor       = `"127.0.0.1:8222"`
	shippedAnyHost       = "host: 0.0.0.0"
	shippedClientPort    = "port: 4222"
	shippedClusterPort   = "port: 6222"
	shippedSvcUser       = "ledger_svc"
	shippedComplianceUsr = "ledger_compliance"
	breakBlockBegin      = "# BEGIN optional break-glass user"
	breakBlockEnd        = "# END optional break-glass user"
)

// nodeFiles are the per-node entry points; each includes the fragments.
var nodeFiles = []string{"node1.conf", "node2.conf", "node3.conf"}

// repoRoot is the directory holding go.mod, above the package directory.
func repoRoot(t testing.TB) string { return proctest.RepoRoot(t) }

// shipped returns the contents of a file of the repository, e.g.
// "deploy/nats/auth.conf".
func shipped(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// repl replaces old by new; old must occur exactly n times outside
// comments (mentions in comments are replaced too).
type repl struct {
	old, new string
	n        int
}

// substitute applies rs in order to text (named name in errors), a NATS
// configuration whose comments start with #.
func substitute(t testing.TB, name, text string, rs ...repl) string {
	t.Helper()
	for _, r := range rs {
		if got := strings.Count(activeText(text), r.old); got != r.n {
			t.Fatalf("%s: %q occurs %d times outside comments, want %d: the shipped file changed, update the test with it",
				name, r.old, got, r.n)
		}
		text = strings.ReplaceAll(text, r.old, r.new)
	}
	return text
}

// activeText is text without its # comments.
func activeText(text string) string {
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		lines[i], _, _ = strings.Cut(line, "#")
	}
	return strings.Join(lines, "\n")
}

// uncommentBlock activates the commented configuration lines ("# {…")
// strictly between the begin and end marker lines; prose comments stay.
func uncommentBlock(t testing.TB, name, text, begin, end string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	in, found := false, 0
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == begin:
			in, found = true, found+1
		case trimmed == end:
			in = false
		case in && strings.HasPrefix(trimmed, "# {"):
			lines[i] = strings.Replace(line, "# {", "{", 1)
		}
	}
	if found != 1 {
		t.Fatalf("%s: %d blocks marked %q, want 1", name, found, begin)
	}
	return strings.Join(lines, "\n")
}

// natsNode is one node of the cluster on loopback.
type natsNode struct {
	name                                 string // server_name
	file                                 string // node1.conf …
	dir                                  string // holds the node's copies of the shipped files
	store                                string
	clientPort, clusterPort, monitorPort int
}

func (n natsNode) conf() string      { return filepath.Join(n.dir, n.file) }
func (n natsNode) clientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }
func (n natsNode) monitor() string   { return fmt.Sprintf("http://127.0.0.1:%d", n.monitorPort) }

// layout is a three-node cluster's configuration: identities, ports and the
// substituted copies of deploy/nats.
type layout struct {
	nodes         []natsNode
	ledger        natsauth.Identity
	reader        natsauth.Identity
	admin         natsauth.Identity
	breakGlass    natsauth.Identity // only used with withBreakGlass
	routePassword string
}

type layoutOption func(*layoutOptions)

type layoutOptions struct{ breakGlass bool }

// withBreakGlass enables the optional break-glass user of auth.conf.
func withBreakGlass(o *layoutOptions) { o.breakGlass = true }

// newLayout picks ports, generates the nkey users and writes each node's
// copies of the shipped configuration with every placeholder replaced.
func newLayout(t testing.TB, opts ...layoutOption) *layout {
	t.Helper()
	var o layoutOptions
	for _, opt := range opts {
		opt(&o)
	}
	l := &layout{routePassword: randomHex(t, 24)}
	var err error
	if l.ledger, err = natsauth.GenerateIdentity(natsauth.RoleLedger); err != nil {
		t.Fatal(err)
	}
	if l.reader, err = natsauth.GenerateIdentity(natsauth.RoleReader); err != nil {
		t.Fatal(err)
	}
	if l.admin, err = natsauth.GenerateIdentity(natsauth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	// The break-glass user is no role of the application; only its key
	// pair matters.
	if l.breakGlass, err = natsauth.GenerateIdentity(natsauth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3*len(nodeFiles))
	base := t.TempDir()
	for i, file := range nodeFiles {
		n := natsNode{name: fmt.Sprintf("licenses-nats-%d", i+1), file: file, dir: filepath.Join(base, fmt.Sprintf("node%d", i+1)),
			clientPort: ports[3*i], clusterPort: ports[3*i+1], monitorPort: ports[3*i+2]}
		n.store = filepath.Join(n.dir, "store")
		l.nodes = append(l.nodes, n)
	}
	for _, n := range l.nodes {
		l.writeNode(t, n, o)
	}
	return l
}

func (l *layout) writeNode(t testing.TB, n natsNode, o layoutOptions) {
	t.Helper()
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Route URLs name the shipped hosts nats-1..3 on port 6222.
	routes := make([]repl, len(l.nodes))
	for i, other := range l.nodes {
		routes[i] = repl{fmt.Sprintf("@nats-%d:6222", i+1), fmt.Sprintf("@127.0.0.1:%d", other.clusterPort), 1}
	}
	cluster := substitute(t, "cluster.conf", shipped(t, "deploy/nats/cluster.conf"), append([]repl{
		{shippedAnyHost, "host: 127.0.0.1", 2},
		{shippedClientPort, fmt.Sprintf("port: %d", n.clientPort), 1},
		{shippedClusterPort, fmt.Sprintf("port: %d", n.clusterPort), 1},
		{shippedMonitor, fmt.Sprintf(`"127.0.0.1:%d"`, n.monitorPort), 1},
		{shippedStoreDir, fmt.Sprintf("%q", n.store), 1},
		{placeholderRoutePass, l.routePassword, 1 + len(l.nodes)}, // the route user, then each route
	}, routes...)...)
	auth := shipped(t, "deploy/nats/auth.conf")
	if o.breakGlass {
		auth = uncommentBlock(t, "auth.conf", auth, breakBlockBegin, breakBlockEnd)
		auth = substitute(t, "auth.conf", auth, repl{placeholderBreakKey, l.breakGlass.PublicKey, 1})
	}
	auth = substitute(t, "auth.conf", auth,
		repl{placeholderLedgerKey, l.ledger.PublicKey, 1},
		repl{placeholderReaderKey, l.reader.PublicKey, 1},
		repl{placeholderAdminKey, l.admin.PublicKey, 1})
	node := shipped(t, "deploy/nats/"+n.file)
	if !strings.Contains(node, "server_name: "+n.name+"\n") {
		t.Fatalf("%s: no line server_name: %s", n.file, n.name)
	}
	write(t, n.conf(), node, 0o600)
	write(t, filepath.Join(n.dir, "cluster.conf"), cluster, 0o600)
	write(t, filepath.Join(n.dir, "auth.conf"), auth, 0o600)
}

// clientURLs is NATS_URL for the whole cluster.
func (l *layout) clientURLs() string {
	urls := make([]string, len(l.nodes))
	for i, n := range l.nodes {
		urls[i] = n.clientURL()
	}
	return strings.Join(urls, ",")
}

// seedFile writes id's seed as a NATS_NKEY file (0600) and returns its path.
func seedFile(t testing.TB, dir string, id natsauth.Identity, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	write(t, path, string(id.Seed)+"\n", 0o600)
	return path
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int { return proctest.FreePorts(t, n) }

// pgLogins are the login users of deploy/postgres/roles.sql in one database.
type pgLogins struct {
	svc, compliance       string // role names
	svcDSN, complianceDSN string
}

// applyRolesSQL runs the shipped roles.sql on superDSN's database, as the
// superuser, with its two user names made unique (roles are shared by every
// database of a server, and other runs may use the same server), then gives
// both users a password as an operator would with \password. The roles are
// dropped when the test ends.
func applyRolesSQL(t testing.TB, superDSN string, times int) pgLogins {
	t.Helper()
	suffix := "_" + randomHex(t, 4)
	lg := pgLogins{svc: shippedSvcUser + suffix, compliance: shippedComplianceUsr + suffix}
	sql := rolesSQL(t, lg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	t.Cleanup(func() { dropRoles(superDSN, lg.svc, lg.compliance) })
	for range times {
		// Without arguments pgx uses the simple protocol: the whole file
		// runs as one implicit transaction, like psql --single-transaction.
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("roles.sql: %v", err)
		}
	}
	svcPass, compPass := randomHex(t, 12), randomHex(t, 12)
	for role, pass := range map[string]string{lg.svc: svcPass, lg.compliance: compPass} {
		if _, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" PASSWORD '"+pass+"'"); err != nil {
			t.Fatal(err)
		}
	}
	lg.svcDSN = withUser(t, superDSN, lg.svc, svcPass)
	lg.complianceDSN = withUser(t, superDSN, lg.compliance, compPass)
	return lg
}

// rolesSQL is the shipped roles.sql with the user names of lg.
func rolesSQL(t testing.TB, lg pgLogins) string {
	t.Helper()
	text := shipped(t, "deploy/postgres/roles.sql")
	// Every statement names the users; count only to notice a rewrite.
	if strings.Count(text, shippedSvcUser) < 4 || strings.Count(text, shippedComplianceUsr) < 4 {
		t.Fatalf("roles.sql no longer creates %s and %s", shippedSvcUser, shippedComplianceUsr)
	}
	text = strings.ReplaceAll(text, shippedSvcUser, lg.svc)
	return strings.ReplaceAll(text, shippedComplianceUsr, lg.compliance)
}

func dropRoles(superDSN string, roles ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	for _, r := range roles {
		ident := pgx.Identifier{r}.Sanitize()
		conn.Exec(ctx, "DROP OWNED BY "+ident)
		conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident)
	}
}

// withUser returns dsn connecting as user with password, in dsn's form.
func withUser(t testing.TB, dsn, user, password string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	// Keyword/value form: the last occurrence of a key wins.
	return dsn + " user=" + user + " password=" + password
}
