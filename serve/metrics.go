package serve

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// metrics is a small registry of counters and gauges written in the
// Prometheus text exposition format (version 0.0.4).
type metrics struct {
	mu     sync.Mutex
	help   map[string]string
	kind   map[string]string
	values map[string]map[string]float64 // name → rendered labels → value
}

func newMetrics() *metrics {
	m := &metrics{help: map[string]string{}, kind: map[string]string{}, values: map[string]map[string]float64{}}
	m.define("nbimg_serve_requests_total", "counter", "Requests answered, by protocol and result.")
	m.define("nbimg_serve_bytes_total", "counter", "Bytes of files sent, by protocol.")
	m.define("nbimg_serve_active", "gauge", "Transfers or connections in progress, by protocol.")
	m.define("nbimg_serve_dhcp_answers_total", "counter", "Proxy DHCP answers, by client class.")
	m.define("nbimg_serve_dhcp_leases_total", "counter", "Full DHCP replies (--dhcp-range), by type: OFFER, ACK, NAK.")
	m.define("nbimg_serve_builds_total", "counter", "Builds of dynamic systems, by system and result.")
	m.define("nbimg_serve_reloads_total", "counter", "Configuration reloads, by result.")
	return m
}

func (m *metrics) define(name, kind, help string) {
	m.help[name], m.kind[name] = help, kind
	m.values[name] = map[string]float64{}
}

// labels renders label pairs (name, value, ...) in the given order.
func labels(kv ...string) string {
	if len(kv) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", kv[i], kv[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func (m *metrics) add(name string, v float64, kv ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[name][labels(kv...)] += v
}

// WriteTo writes every metric, sorted by name and labels.
func (m *metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	var b strings.Builder
	names := make([]string, 0, len(m.values))
	for n := range m.values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", n, m.help[n], n, m.kind[n])
		ls := make([]string, 0, len(m.values[n]))
		for l := range m.values[n] {
			ls = append(ls, l)
		}
		sort.Strings(ls)
		for _, l := range ls {
			fmt.Fprintf(&b, "%s%s %s\n", n, l, strconv.FormatFloat(m.values[n][l], 'f', -1, 64))
		}
	}
	m.mu.Unlock()
	k, err := io.WriteString(w, b.String())
	return int64(k), err
}
