package events

import "time"

// StreamInfo is what readers remember of the stream that holds the events,
// whichever store keeps it (natsbus, memstream).
type StreamInfo struct {
	Name     string
	Created  time.Time // a recreated stream has another: readers resync
	LastSeq  uint64
	FirstSeq uint64
	Replicas int
}
