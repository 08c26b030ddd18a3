package gatekeeper

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/license"
)

// Results of a decision, as counted.
const (
	ResultAllowed     = "allowed"     // enforced, the license is in order
	ResultAllowlisted = "allowlisted" // the route passes whatever the state
	ResultUnenforced  = "unenforced"  // enforcement is off
	ResultDenied      = "denied"      // by code
)

const (
	idxAllowed = codeCount + iota
	idxAllowlisted
	idxUnenforced
	counterCount
)

// Seat checks (seat routes only), by mode and outcome (warned is under +
// 1), counted apart from the decisions.
const (
	idxSeatSoftUnder = iota
	idxSeatSoftWarned
	idxSeatHardUnder
	idxSeatHardWarned
	idxSeatHardDenied
	seatCount
)

// Seat check outcomes, as counted (gatekeeper_seat_checks_total).
const (
	SeatUnder  = "under"  // below the users_limit
	SeatWarned = "warned" // at or over it, allowed with the warning
	SeatDenied = "denied" // at or over it, refused users_limit_reached
)

// counters are striped by a hash of the request line so that cores
// deciding different routes do not contend on one cache line.
const stripes = 8

type stripe struct {
	n [counterCount]atomic.Uint64
	_ [64]byte
}

type counters struct{ s [stripes]stripe }

func (c *counters) count(d *Decision) {
	i := idxAllowed
	switch {
	case !d.Allowed:
		i = codeIndex(d.Code)
	case d.Allowlisted:
		i = idxAllowlisted
	case d.Unenforced:
		i = idxUnenforced
	}
	c.s[d.resultStripe%stripes].n[i].Add(1)
}

// seatCounters are the seat checks' counters, striped as counters are.
type seatCounters struct {
	s [stripes]struct {
		n [seatCount]atomic.Uint64
		_ [64]byte
	}
}

// count counts a seat check.
func (c *seatCounters) count(stripe uint8, i int) { c.s[stripe%stripes].n[i].Add(1) }

func (c *seatCounters) sum(i int) uint64 {
	var n uint64
	for s := range c.s {
		n += c.s[s].n[i].Load()
	}
	return n
}

func codeIndex(code string) int {
	for i, c := range codes {
		if c == code {
			return i
		}
	}
	return 0
}

func (c *counters) sum(i int) uint64 {
	var n uint64
	for s := range c.s {
		n += c.s[s].n[i].Load()
	}
	return n
}

// Stats are a Gate's decision counters since it was created.
type Stats struct {
	Allowed     uint64            // enforced, license in order
	Allowlisted uint64            // allowlisted routes
	Unenforced  uint64            // allowed because enforcement is off
	Denied      map[string]uint64 // by code, every code present
	// Seats are the seat checks of seat routes (Config.SeatRoutes) by
	// mode (license.SeatsSoft, license.SeatsHard) and outcome (SeatUnder,
	// SeatWarned, SeatDenied); soft never denies.
	Seats map[string]map[string]uint64
}

// Stats returns the decision counters.
func (g *Gate) Stats() Stats {
	s := Stats{Allowed: g.stats.sum(idxAllowed), Allowlisted: g.stats.sum(idxAllowlisted),
		Unenforced: g.stats.sum(idxUnenforced), Denied: make(map[string]uint64, codeCount)}
	for i, c := range codes {
		s.Denied[c] = g.stats.sum(i)
	}
	s.Seats = map[string]map[string]uint64{
		license.SeatsSoft: {SeatUnder: g.seats.sum(idxSeatSoftUnder), SeatWarned: g.seats.sum(idxSeatSoftWarned)},
		license.SeatsHard: {SeatUnder: g.seats.sum(idxSeatHardUnder), SeatWarned: g.seats.sum(idxSeatHardWarned),
			SeatDenied: g.seats.sum(idxSeatHardDenied)},
	}
	return s
}

var (
	decisionsDesc = prometheus.NewDesc("gatekeeper_decisions_total",
		"Decisions by result (allowed, allowlisted, unenforced, denied) and denial code.", []string{"result", "code"}, nil)
	seatDesc = prometheus.NewDesc("gatekeeper_seat_checks_total",
		"Seat checks of seat routes (--seat-routes) by seat mode (soft, hard) and outcome (under, warned, denied).", []string{"mode", "outcome"}, nil)
	overrideDesc = prometheus.NewDesc("gatekeeper_enforcement_override",
		"LICENSE_ENFORCE: -1 not set (the install's mode applies), 0 forced off, 1 forced on.", nil, nil)
)

// Collector exports the counters to Prometheus (no per-org labels):
// gatekeeper_decisions_total{result,code},
// gatekeeper_seat_checks_total{mode,outcome} and
// gatekeeper_enforcement_override.
func (g *Gate) Collector() prometheus.Collector { return collector{g} }

type collector struct{ g *Gate }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- decisionsDesc
	ch <- seatDesc
	ch <- overrideDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Stats()
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Allowed), ResultAllowed, "")
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Allowlisted), ResultAllowlisted, "")
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Unenforced), ResultUnenforced, "")
	for _, code := range codes {
		ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Denied[code]), ResultDenied, code)
	}
	for _, mode := range []string{license.SeatsSoft, license.SeatsHard} {
		for _, outcome := range []string{SeatUnder, SeatWarned, SeatDenied} {
			if n, ok := s.Seats[mode][outcome]; ok {
				ch <- prometheus.MustNewConstMetric(seatDesc, prometheus.CounterValue, float64(n), mode, outcome)
			}
		}
	}
	v := -1.0
	if e := c.g.enforce; e != nil {
		v = 0
		if *e {
			v = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(overrideDesc, prometheus.GaugeValue, v)
}
