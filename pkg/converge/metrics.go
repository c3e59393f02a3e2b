package converge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the monitor's Prometheus metrics.
type Metrics struct {
	Registry     *prometheus.Registry
	Instances    *prometheus.GaugeVec   // kpaas_instances{deployment,state}
	Remediations *prometheus.CounterVec // kpaas_remediations_total{deployment,action,result}
	Gated        *prometheus.CounterVec // kpaas_remediation_gated_total{deployment}
	AgentLatency prometheus.Histogram   // kpaas_agent_get_state_seconds
	Passes       prometheus.Counter     // kpaas_monitor_passes_total
	Leader       prometheus.Gauge       // kpaas_monitor_leader
}

// NewMetrics registers the metrics on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kpaas_instances",
			Help: "Instances by health state (healthy, suspect, unhealthy)."}, []string{"deployment", "state"}),
		Remediations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kpaas_remediations_total",
			Help: "Remediations by action (restart, recreate) and result (ok, error)."}, []string{"deployment", "action", "result"}),
		Gated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kpaas_remediation_gated_total",
			Help: "Passes that remediated nothing because more than max_unhealthy instances were unhealthy."}, []string{"deployment"}),
		AgentLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kpaas_agent_get_state_seconds",
			Help: "Latency of answered get_state calls.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		Passes: prometheus.NewCounter(prometheus.CounterOpts{Name: "kpaas_monitor_passes_total", Help: "Observation passes."}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kpaas_monitor_leader", Help: "1 when this monitor holds the leader lock."}),
	}
	m.Registry.MustRegister(m.Instances, m.Remediations, m.Gated, m.AgentLatency, m.Passes, m.Leader,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) set(dep string, o Outcome) {
	m.Instances.WithLabelValues(dep, "healthy").Set(float64(o.Healthy - o.Suspect))
	m.Instances.WithLabelValues(dep, "suspect").Set(float64(o.Suspect))
	m.Instances.WithLabelValues(dep, "unhealthy").Set(float64(len(o.Unhealthy)))
}
