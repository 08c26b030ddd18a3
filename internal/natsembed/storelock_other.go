//go:build !unix

package natsembed

// lockStore is a no-op where flock does not exist: keep one process per
// data directory by other means there.
func lockStore(string) (func(), error) { return func() {}, nil }
