//go:build !unix

package auth

// lockTokensFile does nothing where flock(2) is missing: concurrent edits of
// the tokens file may then lose one another's change.
func lockTokensFile(string) (func(), error) { return func() {}, nil }
