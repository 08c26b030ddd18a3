package manifesttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/testenv/natsroletest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// natsNamespace is where `helm install nats nats/nats -n nats` puts the
// servers; the Secret of the users' public keys lives there.
const natsNamespace = "nats"

type natsSubjects struct {
	Allow []string `yaml:"allow" json:"allow,omitempty"`
	Deny  []string `yaml:"deny" json:"deny,omitempty"`
}

type natsUser struct {
	Nkey        string `yaml:"nkey"`
	Permissions struct {
		Publish   *natsSubjects `yaml:"publish"`
		Subscribe *natsSubjects `yaml:"subscribe"`
	} `yaml:"permissions"`
}

// natsValues is what the tests read of nats-values.yaml.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled   bool `yaml:"enabled"`
			Replicas  int  `yaml:"replicas"`
			RouteURLs struct {
				User     string  `yaml:"user"`
				Password *string `yaml:"password"`
			} `yaml:"routeURLs"`
		} `yaml:"cluster"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled bool   `yaml:"enabled"`
				Dir     string `yaml:"dir"`
				PVC     struct {
					Enabled bool   `yaml:"enabled"`
					Size    string `yaml:"size"`
				} `yaml:"pvc"`
			} `yaml:"fileStore"`
		} `yaml:"jetstream"`
		Merge struct {
			Authorization struct {
				Users []natsUser `yaml:"users"`
			} `yaml:"authorization"`
		} `yaml:"merge"`
	} `yaml:"config"`
	Container struct {
		Env map[string]yaml.Node `yaml:"env"`
	} `yaml:"container"`

	merge map[string]any // config.merge as written, for rendering
}

func loadNATSValues(root string) (*natsValues, error) {
	data, err := os.ReadFile(filepath.Join(root, natsValuesFile))
	if err != nil {
		return nil, err
	}
	var v natsValues
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", natsValuesFile, err)
	}
	var raw struct {
		Config struct {
			Merge map[string]any `yaml:"merge"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", natsValuesFile, err)
	}
	v.merge = raw.Config.Merge
	return &v, nil
}

// envSecrets are the container.env entries taken from Secrets.
func (v *natsValues) envSecrets() map[string]keyRef {
	out := map[string]keyRef{}
	for name, n := range v.Container.Env {
		var e struct {
			ValueFrom struct {
				SecretKeyRef *keyRef `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		}
		if n.Kind == yaml.MappingNode && n.Decode(&e) == nil && e.ValueFrom.SecretKeyRef != nil {
			out[name] = *e.ValueFrom.SecretKeyRef
		}
	}
	return out
}

// envRefRe is the chart's raw-value syntax: "<< $NAME >>" is written
// unquoted into nats.conf, where $NAME is an environment variable.
var envRefRe = regexp.MustCompile(`^<<\s+\$([A-Z_][A-Z0-9_]*)\s+>>$`)

// userRoles maps the environment variable of each user's public key to its
// role; "backup" is not a natsauth role.
var userRoles = map[string]string{"LEDGER_NKEY": "ledger", "READER_NKEY": "reader", "ADMIN_NKEY": "admin", "BACKUP_NKEY": "backup"}

func (v *natsValues) usersByRole() (map[string]natsUser, []string) {
	var p []string
	users := map[string]natsUser{}
	for i, u := range v.Config.Merge.Authorization.Users {
		m := envRefRe.FindStringSubmatch(u.Nkey)
		if m == nil {
			p = append(p, fmt.Sprintf("user %d: nkey %q: want \"<< $NAME >>\" (the public key comes from the environment)", i, u.Nkey))
			continue
		}
		role, ok := userRoles[m[1]]
		if !ok {
			p = append(p, fmt.Sprintf("user %d: unknown key variable %s", i, m[1]))
			continue
		}
		if _, dup := users[role]; dup {
			p = append(p, fmt.Sprintf("user %s is defined twice", role))
		}
		if _, ok := v.envSecrets()[m[1]]; !ok {
			p = append(p, fmt.Sprintf("user %s: container.env has no %s from a Secret", role, m[1]))
		}
		users[role] = u
	}
	return users, p
}

func checkNATSCluster(v *natsValues) []string {
	var p []string
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		p = append(p, fmt.Sprintf("cluster: enabled=%v replicas=%d, want a 3-server cluster", c.Cluster.Enabled, c.Cluster.Replicas))
	}
	if c.Cluster.RouteURLs.User == "" {
		p = append(p, "cluster.routeURLs.user: the routes between the servers must authenticate")
	}
	if c.Cluster.RouteURLs.Password != nil {
		p = append(p, "cluster.routeURLs.password: keep the route password out of this file (a values file of its own)")
	}
	js := c.JetStream
	if !js.Enabled || !js.FileStore.Enabled || js.FileStore.Dir == "" {
		p = append(p, fmt.Sprintf("jetstream: enabled=%v fileStore.enabled=%v dir=%q, want JetStream on file storage", js.Enabled, js.FileStore.Enabled, js.FileStore.Dir))
	}
	if !js.FileStore.PVC.Enabled || !regexp.MustCompile(`^[0-9]+[GT]i$`).MatchString(js.FileStore.PVC.Size) {
		p = append(p, fmt.Sprintf("jetstream.fileStore.pvc: enabled=%v size=%q, want a PersistentVolumeClaim with a size", js.FileStore.PVC.Enabled, js.FileStore.PVC.Size))
	}
	return p
}

func TestNATSValuesCluster(t *testing.T) {
	v, err := loadNATSValues(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range checkNATSCluster(v) {
		t.Error(s)
	}
}

// sortedSet is a sorted copy, and whether it had duplicates.
func sortedSet(s []string) ([]string, bool) {
	out := slices.Clone(s)
	slices.Sort(out)
	return out, len(slices.Compact(slices.Clone(out))) != len(out)
}

func subjects(p *natsSubjects) (allow, deny []string) {
	if p == nil {
		return nil, nil
	}
	return p.Allow, p.Deny
}

// checkNATSPermissions compares the ledger, reader and admin users of the
// values with natsauth.Permissions, which the embedded server uses.
func checkNATSPermissions(v *natsValues) []string {
	users, p := v.usersByRole()
	for _, role := range natsauth.Roles() {
		u, ok := users[string(role)]
		if !ok {
			p = append(p, fmt.Sprintf("no %s user", role))
			continue
		}
		want, err := natsembed.Permissions(role, "")
		if err != nil {
			return append(p, err.Error())
		}
		compare := func(what string, got, want []string) {
			g, dup := sortedSet(got)
			w, _ := sortedSet(want)
			if dup {
				p = append(p, fmt.Sprintf("%s user, %s: a subject is listed twice", role, what))
			}
			if !slices.Equal(slices.Compact(g), w) {
				p = append(p, fmt.Sprintf("%s user, %s differs from natsauth.Permissions: missing %v, extra %v", role, what, minus(w, g), minus(g, w)))
			}
		}
		ga, gd := subjects(u.Permissions.Publish)
		compare("publish allow", ga, want.Publish.Allow)
		compare("publish deny", gd, want.Publish.Deny)
		sa, sd := subjects(u.Permissions.Subscribe)
		var wsa, wsd []string
		if want.Subscribe != nil {
			wsa, wsd = want.Subscribe.Allow, want.Subscribe.Deny
		}
		compare("subscribe allow", sa, wsa)
		compare("subscribe deny", sd, wsd)
	}
	return p
}

func TestNATSPermissionsMatchNatsauth(t *testing.T) {
	v, err := loadNATSValues(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range checkNATSPermissions(v) {
		t.Error(s)
	}
}

// TestNATSChecksCanFail breaks copies of nats-values.yaml.
func TestNATSChecksCanFail(t *testing.T) {
	orig := string(readRepoFile(t, natsValuesFile))
	cases := []struct {
		old, new string
		check    func(*natsValues) []string
		want     string
	}{
		{"    replicas: 3\n", "    replicas: 1\n", checkNATSCluster, "want a 3-server cluster"},
		{"      user: licenses-route\n", "", checkNATSCluster, "the routes between the servers must authenticate"},
		{"      user: licenses-route\n", "      user: licenses-route\n      password: secret\n", checkNATSCluster, "keep the route password out of this file"},
		{"      enabled: true\n      dir: /data", "      enabled: false\n      dir: /data", checkNATSCluster, "want JetStream on file storage"},
		// The reader's list: drop an allowed subject, widen a deny.
		{"                - \"$JS.API.CONSUMER.MSG.NEXT.LICENSES.*\"\n                - \"$JS.ACK.LICENSES.>\"\n                - \"$JS.ACK.*.*.LICENSES.>\"\n                - \"$JS.FC.LICENSES.>\"\n                - \"$JS.FC.*.*.LICENSES.>\"\n              deny:\n                - \"licenses.>\"",
			"                - \"$JS.ACK.LICENSES.>\"\n                - \"$JS.ACK.*.*.LICENSES.>\"\n                - \"$JS.FC.LICENSES.>\"\n                - \"$JS.FC.*.*.LICENSES.>\"\n              deny:\n                - \"licenses.>\"",
			checkNATSPermissions, "reader user, publish allow differs from natsauth.Permissions: missing [$JS.API.CONSUMER.MSG.NEXT.LICENSES.*]"},
		{"- \"$JS.API.STREAM.PURGE.>\"", "- \"$JS.API.STREAM.PURGE.LICENSES\"", checkNATSPermissions, "ledger user, publish deny differs"},
		{"nkey: \"<< $READER_NKEY >>\"", "nkey: UREADERPUBLICKEY", checkNATSPermissions, "no reader user"},
		{"nkey: \"<< $ADMIN_NKEY >>\"", "nkey: UADMINPUBLICKEY", checkNATSPermissions, "no admin user"},
		// The reader reads every inbox again; the ledger may edit the stream.
		{"                - \"_INBOX.reader.>\"", "                - \"_INBOX.>\"", checkNATSPermissions,
			"reader user, subscribe allow differs from natsauth.Permissions: missing [_INBOX.reader.>], extra [_INBOX.>]"},
		{"                - \"licenses.>\"\n                - \"$JS.API.STREAM.SNAPSHOT.LICENSES\"", "                - \"licenses.>\"\n                - \"$JS.API.STREAM.UPDATE.LICENSES\"\n                - \"$JS.API.STREAM.SNAPSHOT.LICENSES\"",
			checkNATSPermissions, "ledger user, publish allow differs from natsauth.Permissions: missing [], extra [$JS.API.STREAM.UPDATE.LICENSES]"},
		{"    READER_NKEY:", "    READER_KEY:", checkNATSPermissions, "container.env has no READER_NKEY"},
	}
	for _, c := range cases {
		if !strings.Contains(orig, c.old) {
			t.Errorf("nats-values.yaml no longer contains %q: update this case", c.old)
			continue
		}
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, kubeDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, natsValuesFile), []byte(strings.Replace(orig, c.old, c.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := loadNATSValues(root)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(c.check(v), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// renderMerge writes config.merge the way the chart (1.x) writes its
// config: pretty JSON without HTML escaping, then every "<< X >>" string
// unquoted.
func renderMerge(merge map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(merge); err != nil {
		return nil, err
	}
	return regexp.MustCompile(`"<<\s+(.*)\s+>>"`).ReplaceAll(buf.Bytes(), []byte("${1}")), nil
}

type natsIdentities map[string]natsauth.Identity // by role name

// serverOptionsFromValues renders config.merge into a nats.conf, sets the
// public key variables to fresh identities and lets nats-server parse it.
func serverOptionsFromValues(t *testing.T, v *natsValues) (*server.Options, natsIdentities) {
	t.Helper()
	conf, err := renderMerge(v.merge)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	ids := natsIdentities{}
	for env, role := range userRoles {
		id, err := natsauth.GenerateIdentity(natsauth.RoleReader) // the role only labels the identity
		if err != nil {
			t.Fatal(err)
		}
		ids[role] = id
		// As `kubectl create secret --from-file` stores nk's output: with
		// its trailing newline.
		t.Setenv(env, id.PublicKey+"\n")
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server does not accept the rendered config.merge: %v\n%s", err, conf)
	}
	return opts, ids
}

// TestNATSServerReadsValues checks what nats-server makes of the values,
// not just the YAML: the variables resolve, the subjects stay literal.
func TestNATSServerReadsValues(t *testing.T) {
	v, err := loadNATSValues(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	opts, ids := serverOptionsFromValues(t, v)
	if len(opts.Nkeys) != len(userRoles) {
		t.Fatalf("nats-server sees %d nkey users, want %d", len(opts.Nkeys), len(userRoles))
	}
	byKey := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		byKey[u.Nkey] = u
	}
	for _, role := range natsauth.Roles() {
		u := byKey[ids[string(role)].PublicKey]
		if u == nil {
			t.Errorf("%s: nats-server has no user with the public key from $%s", role, strings.ToUpper(string(role))+"_NKEY")
			continue
		}
		want, _ := natsembed.Permissions(role, "")
		normalize := func(p *server.Permissions) string {
			sorted := func(s []string) []string { out, _ := sortedSet(s); return out }
			b, _ := json.Marshal(struct {
				Pub, Sub [2][]string
			}{
				[2][]string{sorted(p.Publish.Allow), sorted(p.Publish.Deny)},
				[2][]string{sorted(p.Subscribe.Allow), sorted(p.Subscribe.Deny)},
			})
			return string(b)
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("%s: nats-server parsed no publish/subscribe permissions", role)
			continue
		}
		if got, w := normalize(u.Permissions), normalize(want); got != w {
			t.Errorf("%s: nats-server parsed\n  %s\nwant\n  %s", role, got, w)
		}
	}
	backup := byKey[ids["backup"].PublicKey]
	if backup == nil || backup.Permissions == nil || backup.Permissions.Publish == nil {
		t.Fatal("backup: no permissions")
	}
	for _, s := range []string{"$JS.API.STREAM.SNAPSHOT.LICENSES", "$JS.API.STREAM.INFO.LICENSES", "$JS.SNAPSHOT.ACK.LICENSES.x.1.1"} {
		if !permitted(backup.Permissions.Publish, s) {
			t.Errorf("backup may not publish %s", s)
		}
	}
	for _, s := range []string{"licenses.org.acme", "licenses.audit.acme", "$JS.API.STREAM.CREATE.LICENSES", "$JS.API.STREAM.UPDATE.LICENSES",
		"$JS.API.STREAM.DELETE.LICENSES", "$JS.API.STREAM.PURGE.LICENSES", "$JS.API.STREAM.MSG.DELETE.LICENSES",
		"$JS.API.STREAM.RESTORE.LICENSES", "$JS.API.STREAM.SNAPSHOT.OTHER", "$JS.API.CONSUMER.CREATE.LICENSES"} {
		if permitted(backup.Permissions.Publish, s) {
			t.Errorf("backup may publish %s", s)
		}
	}
	// Its replies only: not the ledger's, nor anyone else's.
	if backup.Permissions.Subscribe == nil || !permitted(backup.Permissions.Subscribe, "_INBOX.backup.x.y") {
		t.Error("backup may not subscribe to its inbox _INBOX.backup.>")
	}
	for _, s := range []string{"_INBOX.x", "_INBOX.ledger.x", "_INBOX.reader.x", "_INBOX.admin.x", "licenses.org.acme"} {
		if backup.Permissions.Subscribe != nil && permitted(backup.Permissions.Subscribe, s) {
			t.Errorf("backup may subscribe to %s", s)
		}
	}
}

// permitted mirrors nats-server: an allow entry matches and no deny does.
func permitted(p *server.SubjectPermission, subject string) bool {
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
	}
	return match(p.Allow) && !match(p.Deny)
}

// TestNATSUsersAgainstServer runs a server configured from the values and
// uses each user the way its program does: the admin creates the stream
// (ledger stream apply), the ledger appends and may not change the stream,
// the reader opens it and is refused appends, other inboxes and durable
// consumers, the backup user takes a snapshot the way `nats stream backup`
// does and is refused everything else.
func TestNATSUsersAgainstServer(t *testing.T) {
	v, err := loadNATSValues(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	opts, ids := serverOptionsFromValues(t, v)
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type conn struct {
		nc   *nats.Conn
		errs chan error
	}
	connect := func(role string) conn {
		t.Helper()
		opt, err := natsauth.ConnectOption(ids[role].Seed)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 16)
		nc, err := nats.Connect(s.ClientURL(), opt, nats.Name(role), nats.CustomInboxPrefix("_INBOX."+role),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatalf("%s cannot connect: %v", role, err)
		}
		t.Cleanup(nc.Close)
		return conn{nc, errs}
	}
	refused := func(c conn, role, subject string) {
		t.Helper()
		if err := c.nc.Publish(subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-c.errs:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("%s publishing %s: %v", role, subject, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s may publish %s", role, subject)
		}
	}

	admin := connect("admin")
	if res, err := natsbus.NewConn(admin.nc).ApplyStream(ctx, natsauth.DefaultStream, 1, false); err != nil || !res.Created {
		t.Fatalf("admin cannot create the stream: %+v %v", res, err)
	}
	ledger := connect("ledger")
	if _, _, err := natsbus.Open(ctx, ledger.nc, natsauth.DefaultStream, 1, false); err != nil {
		t.Fatalf("ledger cannot open the stream: %v", err)
	}
	if _, err := ledger.nc.Request("licenses.audit.acme", []byte(`{"probe":true}`), 5*time.Second); err != nil {
		t.Fatalf("ledger cannot append: %v", err)
	}

	reader := connect("reader")
	if _, info, err := natsbus.Open(ctx, reader.nc, natsauth.DefaultStream, 1, false); err != nil {
		t.Errorf("reader cannot open the stream: %v", err)
	} else if info.LastSeq != 1 {
		t.Errorf("reader sees head %d, want 1", info.LastSeq)
	}
	refused(reader, "reader", "licenses.org.acme")
	refused(reader, "reader", "$JS.API.STREAM.PURGE.LICENSES")

	backup := connect("backup")
	size := snapshot(t, backup.nc)
	if size == 0 {
		t.Error("the snapshot is empty")
	}
	refused(backup, "backup", "licenses.org.acme")
	refused(backup, "backup", "$JS.API.STREAM.DELETE.LICENSES")
	refused(backup, "backup", "$JS.API.CONSUMER.CREATE.LICENSES")

	// The runbook's command (docs/operations.md, Backup: Cluster) with the
	// real nats CLI and the backup user's seed, as nk writes it; on a few
	// MB, so that the snapshot needs the client's flow-control acks.
	big := make([]byte, 32<<10)
	for i := range 256 {
		rand.Read(big) // incompressible: the snapshot is compressed
		if _, err := ledger.nc.Request("licenses.audit.acme", big, 5*time.Second); err != nil {
			t.Fatalf("ledger append %d: %v", i, err)
		}
	}
	cli := proctest.Build(t, t.TempDir(), proctest.NATSCLI)["nats"]
	seeds := map[string]string{}
	for role, id := range ids {
		seeds[role] = filepath.Join(t.TempDir(), role+".nk")
		if err := os.WriteFile(seeds[role], append(id.Seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "licenses-backup")
	out, err := proctest.RunNATSCLI(t, cli, "--server", s.ClientURL(), "--nkey", seeds["backup"], "--inbox-prefix", "_INBOX.backup",
		"stream", "backup", natsauth.DefaultStream, dir, "--check")
	if err != nil {
		t.Fatalf("nats stream backup with the backup user: %v\n%s", err, out)
	}
	for _, f := range []string{"backup.json", "stream.arc.s2"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			entries, _ := os.ReadDir(dir)
			t.Errorf("the backup lacks %s (%v); it holds %v\n%s", f, err, entries, out)
		}
	}
	// The same user may not restore.
	refused(backup, "backup", "$JS.API.STREAM.RESTORE.LICENSES")

	// The ledger, reader and admin from outside: ledger.nk cannot edit the
	// stream (the 256 appends above are the history a per-subject limit
	// would cut), reader.nk reads only its inbox and leaves no consumer
	// behind, admin.nk can edit.
	natsroletest.Check(t, natsroletest.Target{URL: s.ClientURL(), LedgerSeed: seeds["ledger"], ReaderSeed: seeds["reader"],
		AdminSeed: seeds["admin"], NATSCLI: cli, Subject: "licenses.audit.acme", Replicas: 1})
}

// snapshot takes a snapshot of LICENSES over the JetStream API as the nats
// CLI does (`nats stream backup`) and returns its size.
func snapshot(t *testing.T, nc *nats.Conn) int {
	t.Helper()
	inbox := nc.NewRespInbox()
	msgs := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "no_consumers": true, "chunk_size": 64 * 1024})
	resp, err := nc.Request("$JS.API.STREAM.SNAPSHOT."+natsauth.DefaultStream, req, 5*time.Second)
	if err != nil {
		t.Fatalf("backup: snapshot request: %v", err)
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil || r.Error != nil {
		t.Fatalf("backup: snapshot refused: %s", resp.Data)
	}
	size := 0
	for {
		select {
		case m := <-msgs:
			if len(m.Data) == 0 {
				if st := m.Header.Get("Status"); st != "" && st != "204" {
					t.Fatalf("backup: snapshot ended with status %s %s", st, m.Header.Get("Description"))
				}
				return size
			}
			size += len(m.Data)
			if m.Reply != "" {
				if err := m.Respond(nil); err != nil {
					t.Fatal(err)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatal("backup: the snapshot stalled (are the ack subjects allowed?)")
		}
	}
}
