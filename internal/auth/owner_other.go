//go:build !unix

package auth

import "os"

// checkOwner accepts every file where file ownership is not a uid.
func checkOwner(string, os.FileInfo) error { return nil }

// ownerOf returns -1: ownership is not a uid here.
func ownerOf(os.FileInfo) int64 { return -1 }
