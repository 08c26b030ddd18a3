package clustertest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
)

// The shipped cluster configuration, as nats-server reads it, grants the
// ledger, reader and admin users exactly what the embedded server grants
// them, and forms the cluster the README describes.
func TestNATSConfigMatchesEmbedded(t *testing.T) {
	l := newLayout(t)
	for i, n := range l.nodes {
		opts, err := server.ProcessConfigFile(n.conf())
		if err != nil {
			t.Fatalf("%s: %v", n.file, err)
		}
		checkServerOptions(t, l, i, opts)
		users := nkeyUsers(t, n.file, opts)
		if len(users) != 3 {
			t.Fatalf("%s: %d nkey users, want 3 (ledger, reader, admin)", n.file, len(users))
		}
		for _, id := range []natsauth.Identity{l.ledger, l.reader, l.admin} {
			u, ok := users[id.PublicKey]
			if !ok {
				t.Fatalf("%s: no user for the %s key", n.file, id.Role)
			}
			want, err := natsembed.Permissions(id.Role, natsauth.DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			samePermissions(t, fmt.Sprintf("%s: %s", n.file, id.Role), u.Permissions, want)
		}
	}
}

// With the optional break-glass user enabled, a fourth user exists
// without restrictions, and the others are unchanged.
func TestNATSConfigOptionalBreakGlass(t *testing.T) {
	l := newLayout(t, withBreakGlass)
	opts, err := server.ProcessConfigFile(l.nodes[0].conf())
	if err != nil {
		t.Fatal(err)
	}
	users := nkeyUsers(t, "node1.conf", opts)
	if len(users) != 4 {
		t.Fatalf("%d nkey users, want 4", len(users))
	}
	if u, ok := users[l.breakGlass.PublicKey]; !ok || u.Permissions != nil {
		t.Fatalf("break-glass user: present %v, permissions %+v (want none: unrestricted)", ok, u)
	}
	for _, id := range []natsauth.Identity{l.reader, l.admin} {
		want, _ := natsembed.Permissions(id.Role, "")
		samePermissions(t, string(id.Role), users[id.PublicKey].Permissions, want)
	}
}

func checkServerOptions(t *testing.T, l *layout, i int, opts *server.Options) {
	t.Helper()
	n := l.nodes[i]
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s = %v, want %v", n.file, what, got, want)
		}
	}
	check("server_name", opts.ServerName, n.name)
	check("client address", fmt.Sprintf("%s:%d", opts.Host, opts.Port), fmt.Sprintf("127.0.0.1:%d", n.clientPort))
	check("cluster name", opts.Cluster.Name, "licenses")
	check("cluster port", opts.Cluster.Port, n.clusterPort)
	check("route user", opts.Cluster.Username, "route")
	check("route password", opts.Cluster.Password, l.routePassword)
	check("jetstream", opts.JetStream, true)
	check("store_dir", opts.StoreDir, n.store)
	check("sync always", opts.SyncAlways, true)
	check("max_payload", opts.MaxPayload, int32(1<<20))
	check("monitor port", opts.HTTPPort, n.monitorPort)
	check("no_auth_user", opts.NoAuthUser, "")
	check("plain users", len(opts.Users), 0)
	if opts.JetStreamMaxStore <= 0 {
		t.Errorf("%s: max_file_store not set", n.file)
	}
	// Every node routes to all three, with the route credentials.
	var routes []string
	for _, r := range opts.Routes {
		if pw, _ := r.User.Password(); r.User.Username() != "route" || pw != l.routePassword {
			t.Errorf("%s: route %s without the route credentials", n.file, r.Redacted())
		}
		routes = append(routes, r.Host)
	}
	var want []string
	for _, other := range l.nodes {
		want = append(want, fmt.Sprintf("127.0.0.1:%d", other.clusterPort))
	}
	check("routes", routes, want)
}

func nkeyUsers(t *testing.T, file string, opts *server.Options) map[string]*server.NkeyUser {
	t.Helper()
	users := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		if _, dup := users[u.Nkey]; dup {
			t.Fatalf("%s: user %s listed twice", file, u.Nkey)
		}
		users[u.Nkey] = u
	}
	return users
}

// samePermissions compares two permission sets as sets of subjects.
func samePermissions(t *testing.T, who string, got, want *server.Permissions) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no permissions (everything allowed)", who)
	}
	if got.Response != nil || want.Response != nil {
		t.Errorf("%s: response permissions %+v, want %+v", who, got.Response, want.Response)
	}
	sameSubjects(t, who+" publish", got.Publish, want.Publish)
	sameSubjects(t, who+" subscribe", got.Subscribe, want.Subscribe)
}

func sameSubjects(t *testing.T, who string, got, want *server.SubjectPermission) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: %+v, want %+v", who, got, want)
		}
		return
	}
	diff := func(kind string, got, want []string) {
		missing, extra := setDiff(want, got), setDiff(got, want)
		if len(missing) > 0 || len(extra) > 0 || len(got) != len(want) {
			t.Errorf("%s %s: missing %q, extra %q (got %d subjects, want %d)", who, kind, missing, extra, len(got), len(want))
		}
	}
	diff("allow", got.Allow, want.Allow)
	diff("deny", got.Deny, want.Deny)
}

func setDiff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// deploy/nats/licenses-stream.json, for `nats stream add --config`, is the
// stream the ledger provisions with LICENSE_STREAM_REPLICAS=3.
func TestStreamJSONMatchesContract(t *testing.T) {
	raw := shipped(t, "deploy/nats/licenses-stream.json")
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var got jetstream.StreamConfig
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("licenses-stream.json: %v", err)
	}
	want := natsbus.StreamConfig(natsauth.DefaultStream, 3)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("licenses-stream.json differs from the contract:\n got %s\nwant %s", g, w)
	}
	if got.Duplicates != 2*time.Minute {
		t.Fatalf("duplicate window %s", got.Duplicates)
	}
	if err := natsbus.CheckConfig(got); err != nil {
		t.Fatal(err)
	}
	// The README's command line names the same settings.
	readme := shipped(t, "deploy/nats/README.md")
	for _, flag := range []string{"--subjects 'licenses.org.*'", "--subjects 'licenses.audit.*'", "--storage file",
		"--replicas 3", "--retention limits", "--discard new", "--dupe-window 2m", "--deny-delete", "--deny-purge",
		"--allow-direct", "--max-consumers 1000", "--limit-consumer-inactive 5m", "--config licenses-stream.json"} {
		if !strings.Contains(readme, flag) {
			t.Errorf("deploy/nats/README.md does not show %s", flag)
		}
	}
}
