package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/usage"
	"github.com/licenseledger/ledger/license"
)

// trail is an audit.Reader over records built in the test.
type trail []audit.Record

func (tr trail) Scan(_ context.Context, q audit.Query, fn func(*audit.Record) error) error {
	for i := range tr {
		if q.Match(&tr[i]) {
			if err := fn(&tr[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (tr trail) Head(context.Context) (uint64, audit.Hash, error) {
	return uint64(len(tr)), audit.Hash{}, nil
}

// builder appends events to a trail, keeping each subject's chain.
type builder struct {
	t     testing.TB
	trail trail
	heads map[string]uint64
}

func newBuilder(t testing.TB) *builder { return &builder{t: t, heads: map[string]uint64{}} }

func (b *builder) add(org, typ string, at time.Time, data any) {
	subject := events.OrgSubject(org)
	seq := uint64(len(b.trail)) + 1
	env, err := events.NewWithID(fmt.Sprintf("0193a5b0-0000-7000-8000-%012d", seq), typ, org, at,
		events.Actor{Kind: events.ActorOperator, ID: "op"}, b.heads[subject], data)
	if err != nil {
		b.t.Fatal(err)
	}
	raw, err := env.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	m := events.Decode(subject, seq, raw)
	if m.Envelope == nil {
		b.t.Fatalf("event %s: %v", raw, m.Err)
	}
	b.heads[subject] = seq
	b.trail = append(b.trail, audit.NewRecord(m, audit.Hash{}, at))
}

func (b *builder) report(org string, at time.Time, users int) {
	b.add(org, events.TypeUsageReported, at, events.UsageReported{Users: users})
}

func (b *builder) upload(org string, at time.Time, l *license.License) {
	b.add(org, events.TypeUploaded, at, events.Uploaded{LicenseID: l.Payload.LicenseID, Fingerprint: l.Fingerprint, Key: l.Key,
		Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
}

func signFor(t testing.TB, org string, n, limit int) *license.License {
	return licensetest.Sign(t, "k1", map[string]any{
		"license_id": fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", n), "customer": "C", "org_slug": org, "tier": "starter",
		"issued_at": "2027-01-01T00:00:00Z", "expires": "2028-01-01T00:00:00Z", "users_limit": limit,
	})
}

func day(d int) time.Time { return time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d) }

func compute(t testing.TB, tr trail, trust projection.Trust, from, to time.Time, org string) []usage.Row {
	t.Helper()
	rows, err := usage.Compute(context.Background(), tr, trust, usage.Query{From: from, To: to, Org: org})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// A forged license — signed by a key the ring does not trust — never
// counts as a limit: the org has no license in force, so no day is over.
func TestAForgedLicenseSetsNoLimit(t *testing.T) {
	trust := projection.Trust{Ring: licensetest.Ring(t, "k1")}
	b := newBuilder(t)
	forged := licensetest.Sign(t, "k9", map[string]any{
		"license_id": "0193a5b0-7e1a-7c3d-8f00-000000000009", "customer": "C", "org_slug": "acme", "tier": "starter",
		"issued_at": "2027-01-01T00:00:00Z", "expires": "2028-01-01T00:00:00Z", "users_limit": 5,
	})
	b.upload("acme", day(0), forged)
	b.report("acme", day(1), 9)
	rows := compute(t, b.trail, trust, day(0), day(31), "")
	got, _ := json.Marshal(rows)
	want := `[{"month":"2027-03","org":"acme","max_users":9,"users_limit":null,"license_id":null,"days_over":0,"max_overage":0,"reports":1}]`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestQueryChecks(t *testing.T) {
	for _, q := range []usage.Query{
		{},
		{From: day(3), To: day(3)},
		{From: day(3), To: day(1)},
		{From: day(0), To: day(0).AddDate(11, 0, 0)},
	} {
		if _, err := usage.Compute(context.Background(), trail{}, projection.Trust{}, q); err == nil {
			t.Errorf("%v..%v: no error", q.From, q.To)
		}
	}
	for _, v := range []string{"2027-03", "2027-03-05", "2027-03-05T10:00:00Z", "2027-03-05T10:00:00+02:00"} {
		if _, err := usage.ParseTime(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"", "2027", "2027-13", "03/05/2027", "2027-03-05 10:00"} {
		if _, err := usage.ParseTime(v); err == nil {
			t.Errorf("%q parsed", v)
		}
	}
}

// FuzzUsageReport runs random histories of reports, uploads and removals
// for three orgs over three months and checks the report against what the
// history says directly: the most users in force in each month, the
// changes counted, days over bounded by the month, and the same rows
// whether the period is asked for at once or a month at a time.
func FuzzUsageReport(f *testing.F) {
	f.Add([]byte{0, 0, 5, 10, 1, 1, 60, 20, 2, 0, 30, 5, 0, 2, 0, 40})
	f.Add([]byte{1, 1, 1, 1, 1, 0, 200, 3, 0, 0, 49, 100, 0, 0, 51, 200, 0, 1, 2, 2})
	f.Add([]byte{2, 2, 9, 250, 2, 0, 0, 1, 2, 0, 255, 1})
	ring := licensetest.Ring(f, "k1")
	trust := projection.Trust{Ring: ring}
	orgs := []string{"acme", "globex", "initech"}
	limits := []int{0, 10, 50}
	var lics [3][3]*license.License
	for i, org := range orgs {
		for j, lim := range limits {
			lics[i][j] = signFor(f, org, i*3+j, lim)
		}
	}
	f.Fuzz(func(t *testing.T, ops []byte) { checkHistory(t, trust, lics, ops) })
}

// checkHistory is FuzzUsageReport's body.
func checkHistory(t *testing.T, trust projection.Trust, lics [3][3]*license.License, ops []byte) {
	orgs := []string{"acme", "globex", "initech"}
	start := time.Date(2027, 2, 20, 0, 0, 0, 0, time.UTC)
	from, to := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	b := newBuilder(t)
	at := start
	type change struct {
		at    time.Time
		users int
	}
	history := map[string][]change{}
	for i := 0; i+3 < len(ops) && i < 400; i += 4 {
		org := orgs[int(ops[i])%3]
		at = at.Add(time.Duration(ops[i+3]) * 37 * time.Minute)
		switch ops[i+1] % 4 {
		case 0, 1: // a report; unchanged ones are not appended, as the ledger does
			users := int(ops[i+2])
			if h := history[org]; len(h) > 0 && h[len(h)-1].users == users {
				continue
			}
			b.report(org, at, users)
			history[org] = append(history[org], change{at, users})
		case 2:
			b.upload(org, at, lics[int(ops[i])%3][int(ops[i+2])%3])
		case 3:
			b.add(org, events.TypeRemoved, at, events.Removed{LicenseID: "x"})
		}
	}
	all := compute(t, b.trail, trust, from, to, "")
	byKey := map[string]usage.Row{}
	for _, r := range all {
		byKey[r.Org+" "+r.Month] = r
	}
	for m := from; m.Before(to); m = m.AddDate(0, 1, 0) {
		end := m.AddDate(0, 1, 0)
		month := compute(t, b.trail, trust, m, end, "")
		for _, r := range month {
			if got, want := mustJSON(t, byKey[r.Org+" "+r.Month]), mustJSON(t, r); got != want {
				t.Fatalf("%s %s over the whole period %s, alone %s", r.Org, r.Month, got, want)
			}
		}
		for _, org := range orgs {
			r, ok := byKey[org+" "+m.Format("2006-01")]
			h := history[org]
			if len(h) == 0 || !h[0].at.Before(to) {
				if ok {
					t.Fatalf("%s never reported before %s, yet has a row %v", org, to, r)
				}
				continue
			}
			if !ok {
				t.Fatalf("%s reported, yet no row for %s", org, m.Format("2006-01"))
			}
			// Direct from the history: the value in force at the month's
			// start and every change inside it.
			maxUsers, changes := -1, 0
			for i, c := range h {
				next := end
				if i+1 < len(h) {
					next = h[i+1].at
				}
				if c.at.Before(end) && next.After(m) {
					maxUsers = max(maxUsers, c.users)
				}
				if !c.at.Before(m) && c.at.Before(end) {
					changes++
				}
			}
			switch {
			case maxUsers < 0 && r.MaxUsers != nil, maxUsers >= 0 && (r.MaxUsers == nil || *r.MaxUsers != maxUsers):
				t.Fatalf("%s %s: max_users %v, the history says %d", org, r.Month, mustJSON(t, r.MaxUsers), maxUsers)
			case r.Reports != changes:
				t.Fatalf("%s %s: %d reports, the history has %d changes", org, r.Month, r.Reports, changes)
			case r.DaysOver < 0 || r.DaysOver > int(end.Sub(m).Hours()/24):
				t.Fatalf("%s %s: %d days over", org, r.Month, r.DaysOver)
			case r.MaxOverage < 0 || r.MaxUsers == nil && r.MaxOverage != 0 || r.MaxUsers != nil && r.MaxOverage > *r.MaxUsers:
				t.Fatalf("%s %s: max_overage %d with max_users %v", org, r.Month, r.MaxOverage, mustJSON(t, r.MaxUsers))
			case (r.DaysOver == 0) != (r.MaxOverage == 0):
				t.Fatalf("%s %s: %d days over, max_overage %d", org, r.Month, r.DaysOver, r.MaxOverage)
			case r.UsersLimit != nil && *r.UsersLimit != 0 && *r.UsersLimit != 10 && *r.UsersLimit != 50:
				t.Fatalf("%s %s: users_limit %d", org, r.Month, *r.UsersLimit)
			}
		}
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
