//! Prometheus metrics: requests and latencies by route, authenticate outcomes, active sessions
//! (gauge refreshed by the collector task), events published.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub authenticate: IntCounterVec,
    pub events: IntCounterVec,
    pub active_sessions: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("lanyard_registry".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests"),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            &["route"],
        )?;
        let authenticate = IntCounterVec::new(
            Opts::new("authenticate_total", "authenticate outcomes"),
            &["via", "outcome"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("events_published_total", "session events"),
            &["kind"],
        )?;
        let active_sessions =
            IntGauge::new("active_sessions", "sessions neither revoked nor expired")?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(authenticate.clone()),
            Box::new(events.clone()),
            Box::new(active_sessions.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            authenticate,
            events,
            active_sessions,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
