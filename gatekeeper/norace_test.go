//go:build !race

package gatekeeper

const raceEnabled = false
