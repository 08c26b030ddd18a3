package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/projection"
)

// tableText returns table's rows as PostgreSQL prints them, in order.
func tableText(t *testing.T, pool *pgxpool.Pool, table, order string) []string {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT t::text FROM `+table+` t ORDER BY `+order)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyBinary writes c into table within one transaction.
func copyBinary(t *testing.T, pool *pgxpool.Pool, c *copyBuf, table string, cols []string) error {
	t.Helper()
	ctx := testContext(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := c.copyTo(ctx, tx.Conn().PgConn(), table, cols); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// The binary COPY stream the projector builds stores exactly what pgx
// stores for the same values: every kind of audit record.
func TestBinaryAuditRowsStoreWhatPgxStores(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE audit_binary (LIKE license_audit INCLUDING ALL)`); err != nil {
		t.Fatal(err)
	}
	msgs := auditFixture(t)
	recs := insertAudit(t, pool, msgs) // pgx, from AuditRow
	var c copyBuf
	for i, r := range recs {
		appendAuditRow(&c, r, msgs[i].Envelope != nil)
	}
	if err := copyBinary(t, pool, &c, "audit_binary", auditColumns); err != nil {
		t.Fatal(err)
	}
	want := tableText(t, pool, "license_audit", "seq")
	got := tableText(t, pool, "audit_binary", "seq")
	if len(want) != len(msgs) || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("binary COPY stored\n%s\npgx stored\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The fixture has rows with and without jsonb.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_binary WHERE envelope IS NULL`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows without a parsed envelope (%v), want 3: not JSON, not UTF-8, a NUL escape", n, err)
	}
}

// oldRowArgs is how org rows were bound for pgx's COPY.
func oldRowArgs(r projection.Row) []any {
	var updated any
	if !r.UpdatedAt.IsZero() {
		updated = r.UpdatedAt
	}
	return []any{r.OrgSlug, r.LicenseID, r.Customer, r.Tier, r.Products, r.Features, r.IssuedAt, r.NotBefore,
		r.ExpiresAt, r.UsersLimit, r.GraceDays, r.LicenseKey, r.Fingerprint, r.Revoked, r.RevokedNote,
		r.PendingLicenseID, r.PendingNotBefore, r.PendingLicenseKey, updated, int64(r.LastSeq), r.UsersActive, r.UsersReportedAt}
}

func TestBinaryOrgRowsStoreWhatPgxStores(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE org_binary (LIKE org_licenses INCLUDING ALL);
		CREATE TABLE revoked_binary (LIKE revoked_licenses INCLUDING ALL)`); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	at := func(t time.Time) *time.Time { return &t }
	rows := []projection.Row{
		{OrgSlug: "removed", Products: []string{}, Features: []string{}, LastSeq: 7},
		{OrgSlug: "acme", LicenseID: str("0193a5b0-7e1a-7c3d-8f00-1234567890ab"), Customer: str(`Acme "Corp", Ünïcode ✓`),
			Tier: str("enterprise"), Products: []string{"chat", "", `a,b "c"`, "NULL"}, Features: []string{"sso"},
			IssuedAt: at(time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)), NotBefore: at(time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)),
			ExpiresAt: at(time.Date(9998, 12, 31, 0, 0, 0, 0, time.FixedZone("x", 3600))), UsersLimit: num(1<<31 - 1), GraceDays: num(0),
			LicenseKey: str("key.sig"), Fingerprint: str("sha256:00"), Revoked: true, RevokedNote: str(""),
			PendingLicenseID: str("0193A5B0-7E1A-7C3D-8F00-1234567890AC"), PendingNotBefore: at(time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC)),
			PendingLicenseKey: str("pending.sig"), UpdatedAt: time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC), LastSeq: 1 << 40,
			UsersActive: num(1<<31 - 1), UsersReportedAt: at(time.Date(2026, 12, 1, 0, 0, 0, 999000, time.UTC))},
		{OrgSlug: "counted", Products: []string{}, Features: []string{}, LastSeq: 9, UsersActive: num(0),
			UsersReportedAt: at(time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC))},
	}
	var c copyBuf
	var pgxRows [][]any
	for _, r := range rows {
		appendOrgRow(&c, r)
		pgxRows = append(pgxRows, oldRowArgs(r))
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"org_licenses"}, orgColumns, pgx.CopyFromRows(pgxRows)); err != nil {
		t.Fatal(err)
	}
	if err := copyBinary(t, pool, &c, "org_binary", orgColumns); err != nil {
		t.Fatal(err)
	}
	want, got := tableText(t, pool, "org_licenses", "org_slug"), tableText(t, pool, "org_binary", "org_slug")
	if len(want) != len(rows) || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("binary COPY stored\n%s\npgx stored\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	var r copyBuf
	r.row(3)
	r.text("acme")
	r.uuid("0193a5b0-7e1a-7c3d-8f00-1234567890ab")
	r.int8(42)
	if err := copyBinary(t, pool, &r, "revoked_binary", []string{"org_slug", "license_id", "seq"}); err != nil {
		t.Fatal(err)
	}
	if got := tableText(t, pool, "revoked_binary", "seq"); len(got) != 1 || got[0] != "(acme,0193a5b0-7e1a-7c3d-8f00-1234567890ab,42)" {
		t.Fatalf("revocation stored as %q", got)
	}
}

// A value the column cannot hold fails the batch before anything is sent,
// as a bound parameter would.
func TestBinaryCopyRefusesWhatAColumnCannotHold(t *testing.T) {
	_, pool := migratedDB(t)
	for name, fill := range map[string]func(c *copyBuf){
		"license id not a UUID": func(c *copyBuf) { c.uuid("not-a-uuid") },
		"int out of range":      func(c *copyBuf) { c.int4(1 << 31) },
	} {
		t.Run(name, func(t *testing.T) {
			var c copyBuf
			c.row(3)
			c.text("acme")
			fill(&c)
			c.int8(1)
			if err := copyBinary(t, pool, &c, "revoked_licenses", []string{"org_slug", "license_id", "seq"}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if got := tableText(t, pool, "revoked_licenses", "seq"); len(got) != 0 {
		t.Fatalf("rows stored: %q", got)
	}
}
