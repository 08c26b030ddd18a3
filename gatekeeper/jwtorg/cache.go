package jwtorg

import "sync/atomic"

// entryOverhead is what an entry costs besides its strings: the struct,
// its slot and allocator rounding.
const entryOverhead = 96

// cacheEntry is a verified token (immutable once stored).
type cacheEntry struct {
	token string
	org   string // "": the token carries no org (ErrNoClaim)
	until int64  // Unix nanoseconds: exp plus the leeway
	gen   uint64 // the key set generation it was verified with
}

func (e *cacheEntry) size() int64 { return int64(len(e.token)+len(e.org)) + entryOverhead }

// tokenCache is a lock-free direct-mapped cache of verified tokens: a
// slot per hash, the full token compared on a hit, a new token replacing
// the slot's. A lookup is a load and a comparison, without allocating or
// writing shared memory. Only tokens that verified are stored, so a
// client sending forged tokens cannot evict anything. The bytes held are
// bounded: a token that would go past the bound is not stored.
type tokenCache struct {
	slots   []atomic.Pointer[cacheEntry]
	mask    uint64
	limit   int64
	bytes   atomic.Int64 // reserved before an entry is stored (never past limit), released after it is removed
	entries atomic.Int64 // counted before an entry is stored, released after it is removed
}

func newTokenCache(entries, bytes int) *tokenCache {
	n := 1
	for n < entries {
		n <<= 1
	}
	return &tokenCache{slots: make([]atomic.Pointer[cacheEntry], n), mask: uint64(n - 1), limit: int64(bytes)}
}

// get returns token's entry, if cached (h is its hash).
func (c *tokenCache) get(h uint64, token string) *cacheEntry {
	if e := c.slots[h&c.mask].Load(); e != nil && e.token == token {
		return e
	}
	return nil
}

// put stores e in the slot of hash h, evicting the slot's entry. When
// another writer changes the slot meanwhile, or the bytes bound would be
// passed, e is dropped (the token is verified again next time).
func (c *tokenCache) put(h uint64, e *cacheEntry) {
	slot := &c.slots[h&c.mask]
	if old := slot.Load(); old != nil {
		if !slot.CompareAndSwap(old, nil) {
			return
		}
		c.release(old)
	}
	if !c.reserve(e.size()) {
		return
	}
	c.entries.Add(1)
	if !slot.CompareAndSwap(nil, e) {
		c.release(e)
	}
}

// reserve counts n more bytes unless that passes the bound.
func (c *tokenCache) reserve(n int64) bool {
	for {
		b := c.bytes.Load()
		if b+n > c.limit {
			return false
		}
		if c.bytes.CompareAndSwap(b, b+n) {
			return true
		}
	}
}

func (c *tokenCache) release(e *cacheEntry) {
	c.bytes.Add(-e.size())
	c.entries.Add(-1)
}

// clear empties the cache.
func (c *tokenCache) clear() {
	for i := range c.slots {
		if old := c.slots[i].Swap(nil); old != nil {
			c.release(old)
		}
	}
}
