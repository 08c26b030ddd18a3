package events

import (
	"strings"

	"github.com/licenseledger/ledger/internal/strictjson"
)

// decodeDataFast decodes the data of the event types every reader folds
// (uploads, invalidations, removals, due times, enforcement changes, usage
// reports, seat enforcement changes) in
// one pass, and reports whether it did. It gives exactly what
// json.Unmarshal gives — keys matched exactly, else case-insensitively,
// the last match winning, null leaving a field as it is (a pointer nil),
// unknown keys ignored — and leaves everything else to json.Unmarshal:
// other types, a target that is not empty, data that is not a plain JSON
// object or has a value of the wrong type (so errors, and the partly
// filled target encoding/json leaves, are its own).
func decodeDataFast(data []byte, v any) bool {
	switch d := v.(type) {
	case *Uploaded:
		if d == nil || *d != (Uploaded{}) {
			return false
		}
		u, ok := decodeUploaded(data)
		if ok {
			*d = u
		}
		return ok
	case *Invalidated:
		if d == nil || *d != (Invalidated{}) {
			return false
		}
		var x Invalidated
		ok := members(data, invalidatedKeys, func(i int, val []byte) bool {
			if i == 0 {
				return setString(val, &x.LicenseID)
			}
			return setString(val, &x.Note)
		})
		if ok {
			*d = x
		}
		return ok
	case *Removed:
		if d == nil || *d != (Removed{}) {
			return false
		}
		var x Removed
		ok := members(data, removedKeys, func(_ int, val []byte) bool { return setString(val, &x.LicenseID) })
		if ok {
			*d = x
		}
		return ok
	case *Due:
		if d == nil || *d != (Due{}) {
			return false
		}
		var x Due
		ok := members(data, dueKeys, func(i int, val []byte) bool {
			if i == 0 {
				return setString(val, &x.LicenseID)
			}
			return x.DueAt.UnmarshalJSON(val) == nil
		})
		if ok {
			*d = x
		}
		return ok
	case *UsageReported:
		if d == nil || *d != (UsageReported{}) {
			return false
		}
		var x UsageReported
		ok := members(data, usageKeys, func(_ int, val []byte) bool { return jsonInt("", val, &x.Users) == nil })
		if ok {
			*d = x
		}
		return ok
	case *SeatEnforcementChanged:
		if d == nil || *d != (SeatEnforcementChanged{}) {
			return false
		}
		var x SeatEnforcementChanged
		ok := members(data, enforcementKeys, func(_ int, val []byte) bool { return setString(val, &x.Mode) })
		if ok {
			*d = x
		}
		return ok
	case *EnforcementChanged:
		if d == nil || *d != (EnforcementChanged{}) {
			return false
		}
		var x EnforcementChanged
		ok := members(data, enforcementKeys, func(_ int, val []byte) bool { return setString(val, &x.Mode) })
		if ok {
			*d = x
		}
		return ok
	}
	return false
}

// The JSON keys of the fields decodeDataFast fills, in the order its
// setters number them.
var (
	uploadedKeys    = []string{"license_id", "fingerprint", "key", "slot", "grace_days_effective", "source", "replaces"}
	invalidatedKeys = []string{"license_id", "note"}
	removedKeys     = []string{"license_id"}
	dueKeys         = []string{"license_id", "due_at"}
	enforcementKeys = []string{"mode"}
	usageKeys       = []string{"users"}
)

// members hands each member of the object data whose key names one of
// keys (exactly, else case-insensitively, as encoding/json matches
// fields) to set, with the key's index. It reports false when data is not
// a strictly valid object or set refused a value.
func members(data []byte, keys []string, set func(i int, value []byte) bool) bool {
	ok := true
	err := strictjson.CheckMembers(data, nil, func(key, value []byte) {
		if !ok {
			return
		}
		if i := fieldIndex(key, keys); i >= 0 {
			ok = set(i, value)
		}
	})
	return err == nil && ok
}

func fieldIndex(key []byte, keys []string) int {
	for i, k := range keys {
		if string(key) == k {
			return i
		}
	}
	for i, k := range keys {
		if strings.EqualFold(string(key), k) {
			return i
		}
	}
	return -1
}

// setString sets *dst to the JSON string val (null leaves it); false for
// any other value.
func setString(val []byte, dst *string) bool {
	return jsonString("", val, dst) == nil
}

// decodeUploaded decodes license.uploaded data for decodeDataFast.
func decodeUploaded(data []byte) (Uploaded, bool) {
	var u Uploaded
	ok := members(data, uploadedKeys, func(i int, val []byte) bool {
		switch i {
		case 0:
			return setString(val, &u.LicenseID)
		case 1:
			return setString(val, &u.Fingerprint)
		case 2:
			return setString(val, &u.Key)
		case 3:
			return setString(val, &u.Slot)
		case 4:
			return jsonInt("", val, &u.GraceDaysEffective) == nil
		case 5:
			return setString(val, &u.Source)
		}
		if isNull(val) {
			u.Replaces = nil
			return true
		}
		var s string
		if !setString(val, &s) {
			return false
		}
		u.Replaces = &s
		return true
	})
	return u, ok
}
