// Package clustertest checks the scaled deployment shipped in deploy/nats and
// deploy/postgres. Its tests read the shipped files, replace only their
// placeholders, host names, ports and paths (failing when one is missing, so
// a changed file is never silently skipped), and then:
//
//   - compare the NATS users' permissions with internal/natsauth, subject by
//     subject, and the stream definition with internal/natsbus;
//   - validate every node configuration with `nats-server -t`;
//   - run the three-node cluster as real nats-server processes, a PostgreSQL
//     database set up with `ledger migrate up` and roles.sql, two `ledger
//     serve` and two `gatekeeper` processes, and exercise the whole path:
//     upload, enforcement on both gatekeepers, projection into PostgreSQL,
//     and the reader's inability to write or delete;
//   - run the cluster backup and restore of docs/operations.md with the real
//     nats CLI (`nats stream backup --check`, `nats stream rm`, `nats stream
//     restore`), then `ledger stream reseed`, and check that every message,
//     the ledger's statuses and its projection come back.
//
// The binaries are built from this module (nats-server and the nats CLI at
// the versions go.mod pins).
package clustertest
