// Package migrations holds the PostgreSQL schema as numbered SQL files,
// embedded in the binaries and applied by goose (ledger migrate).
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
