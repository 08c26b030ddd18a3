// Package faulttest proves, with real processes, real NATS and real
// PostgreSQL, that the ledger never loses, duplicates or reorders an
// acknowledged event when the parts around it fail:
//
//   - nats-server (a separate process, JetStream file store) killed with
//     SIGKILL and restarted on the same port and store during concurrent
//     uploads through `ledger serve`, which reconnects by itself;
//   - the stream leader of a 3-node JetStream cluster (stream replicas 3)
//     shut down during uploads, then brought back;
//   - PostgreSQL stopped during uploads: uploads keep succeeding, the
//     projector catches up when it returns, a gatekeeper keeps deciding
//     correctly throughout;
//   - two projectors racing on one database with the advisory lock
//     bypassed, a checkpoint moved under an active projector, and the
//     active projector process killed with SIGKILL while a standby waits;
//   - PostgreSQL restored from an older pg_dump while the ledger runs: the
//     projector resumes from the restored checkpoint and the chain
//     continues.
//
// Every scenario records each acknowledged upload (org, license id and the
// seq the ledger answered) and then checks the same things: each
// acknowledged event is on the stream at its seq, and no license was
// appended twice; license_audit has exactly one row per stream sequence,
// gapless, its hash chain verified (internal/audit Verify) against the
// stream's bytes; org_licenses equals the in-memory fold of the stream;
// and the clients (HTTP and the `ledger upload` CLI) saw nothing but 200,
// 409 and 503.
//
// The default runs are bounded (each well under 30 s of faults). Built
// with -tags soak, the scenarios run for longer with more faults, and the
// projector scenarios over a million events.
package faulttest
