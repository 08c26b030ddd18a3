// Package keyringmetric exports a process's trusted vendor key ring to
// Prometheus as license_keyring_info{fingerprint="…"} 1. The ledger and
// every gatekeeper export it under this one name, so a single query finds
// the processes that trust different keys:
//
//	count(count by (fingerprint) (license_keyring_info)) > 1
package keyringmetric

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/license"
)

var desc = prometheus.NewDesc("license_keyring_info",
	"The trusted vendor key ring: 1 for its fingerprint (SHA-256 of its kid:key lines; see ledger status --install).",
	[]string{"fingerprint"}, nil)

// Collector exports keys' ring as it is at each scrape, so a reload
// (SIGHUP) shows at once.
func Collector(keys *license.Keys) prometheus.Collector { return collector{keys} }

type collector struct{ keys *license.Keys }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- desc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, c.keys.Ring().Fingerprint())
}
