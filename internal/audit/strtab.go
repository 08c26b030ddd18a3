package audit

import (
	"hash/maphash"
	"math"
)

// strtab interns the in-memory trail's strings (orgs, actor ids, types,
// actor kinds): each distinct string is kept once, its bytes packed in one
// buffer, and named by a uint32. It costs about 10 bytes per distinct
// string beside its bytes (an end offset, and a slot of an open-addressed
// index at most 3/4 full), where a map[string]uint32 with a []string costs
// about 60, and a string per record 16 plus its bytes. It is not safe for
// concurrent use: Memory's lock guards it.
type strtab struct {
	bytes []byte   // every string, one after the other
	ends  []uint32 // ends[i]: where string i ends in bytes (it starts where i-1 ends)
	slots []uint32 // linear probing: 0 is empty, else index+1
	seed  maphash.Seed
}

// str returns string i (its own copy).
func (t *strtab) str(i uint32) string { return string(t.view(i)) }

func (t *strtab) view(i uint32) []byte {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.bytes[start:t.ends[i]]
}

// find returns s's index, or the empty slot where it would go.
func (t *strtab) find(s string) (slot int, index uint32, ok bool) {
	if len(t.slots) == 0 {
		return -1, 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := maphash.String(t.seed, s) & mask; ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return int(i), 0, false
		}
		if string(t.view(v-1)) == s {
			return int(i), v - 1, true
		}
	}
}

// lookup returns s's index, if s was interned.
func (t *strtab) lookup(s string) (uint32, bool) {
	_, i, ok := t.find(s)
	return i, ok
}

// intern returns s's index, adding s when new. It fails only when the
// table would outgrow its uint32 offsets (4 GiB of distinct strings).
func (t *strtab) intern(s string) (uint32, bool) {
	if i, ok := t.lookup(s); ok {
		return i, true
	}
	if uint64(len(t.bytes))+uint64(len(s)) > math.MaxUint32 || len(t.ends) == math.MaxUint32-1 {
		return 0, false
	}
	if 4*(len(t.ends)+1) > 3*len(t.slots) {
		t.grow()
	}
	slot, _, _ := t.find(s)
	t.bytes = append(t.bytes, s...)
	t.ends = append(t.ends, uint32(len(t.bytes)))
	t.slots[slot] = uint32(len(t.ends))
	return uint32(len(t.ends) - 1), true
}

// grow doubles the index and places every string again.
func (t *strtab) grow() {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
	}
	t.slots = make([]uint32, max(2*len(t.slots), 64))
	mask := uint64(len(t.slots) - 1)
	for i := range t.ends {
		j := maphash.Bytes(t.seed, t.view(uint32(i))) & mask
		for t.slots[j] != 0 {
			j = (j + 1) & mask
		}
		t.slots[j] = uint32(i + 1)
	}
}
