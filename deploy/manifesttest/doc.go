// Package manifesttest checks the deployment files of the repository: the
// Dockerfile and .dockerignore at its root, the Kubernetes manifests and the
// NATS Helm values in deploy/kubernetes, and the alert rules and links of
// docs/deploy.md. It has no code of its own; everything is in its tests,
// which read those files and compare them with the binaries (their --help
// output, the permissions of internal/natsauth, the metrics they register).
package manifesttest
