package pgserver

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	cases := map[string]string{
		"postgres://u:p@h:5432/postgres?sslmode=disable": "postgres://u:p@h:5432/x?sslmode=disable",
		"postgresql://h/":               "postgresql://h/x",
		"host=h user=u dbname=postgres": "host=h user=u dbname=postgres dbname=x",
	}
	for in, want := range cases {
		got, err := WithDatabase(in, "x")
		if err != nil || got != want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	cfg, err := pgx.ParseConfig("host=h user=u dbname=postgres dbname=x")
	if err != nil || cfg.Database != "x" {
		t.Fatalf("keyword/value override not honoured: %v %v", cfg, err)
	}
	// The URL may hold a password, so it must not appear in the error.
	if _, err := WithDatabase("postgres://u:secret@%zz", "x"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad URL: %v", err)
	}
}
