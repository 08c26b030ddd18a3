// Package manifesttest checks the deployment files of the repository: the
// Dockerfile and .dockerignore at its root, the Kubernetes manifests and the
// NATS Helm values in deploy/kubernetes, the alert rules of deploy/prometheus
// (their expressions, and promtool check/test rules),
// the links between the README, docs/ and the READMEs of deploy/, the
// README's package map, and the Go toolchain every build path selects
// (.ci/run, scripts/, the Dockerfile, the README's Quickstart). It has no
// code of its own; everything is in its tests, which read those files and
// compare them with the binaries (their --help output, the permissions of
// internal/natsauth, the metrics they register).
package manifesttest
