// Package examplestest builds the examples module (examples/, a Go module
// of its own that reaches this one through a replace directive, as another
// module would through a require) and runs its programs against a ledger
// started from this module's binaries.
package examplestest
