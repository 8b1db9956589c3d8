//! Logs and metrics.
//!
//! Logs: `tracing` with key/value fields; JSON when stderr is not a terminal (production,
//! Kubernetes), human-readable otherwise. Metrics: Prometheus, in the process-wide default
//! registry, named `tci_<service>_<name>_<unit>[_total]` with bounded labels.

use std::io::IsTerminal;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogConfig;

/// Installs the global tracing subscriber. Safe to call more than once (later calls are no-ops),
/// so tests may call it too.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match cfg.format.as_str() {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

fn must<T>(r: prometheus::Result<T>, name: &str) -> T {
    match r {
        Ok(v) => v,
        // Only a programming error (invalid name or label set) gets here; fail loudly at start-up.
        Err(e) => panic!("invalid metric {name}: {e}"),
    }
}

/// Registers a metric in the default registry.
fn register<C: prometheus::core::Collector + Clone + 'static>(c: C, name: &str) -> C {
    match prometheus::default_registry().register(Box::new(c.clone())) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => c,
        Err(e) => panic!("cannot register metric {name}: {e}"),
    }
}

// Services keep their metrics in a `LazyLock` static, so each name is registered once per
// process. Should a name be registered twice anyway (a programming error), the second instance
// works but is not exported; `AlreadyReg` is tolerated rather than crashing a running service.

/// A counter `name` (must end in `_total`).
pub fn counter(name: &str, help: &str) -> IntCounter {
    register(must(IntCounter::new(name, help), name), name)
}

/// A counter of a fractional quantity (seconds, bytes): `name` must end in `_total`.
pub fn float_counter(name: &str, help: &str) -> prometheus::Counter {
    register(must(prometheus::Counter::new(name, help), name), name)
}

/// A counter with labels.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        must(IntCounterVec::new(Opts::new(name, help), labels), name),
        name,
    )
}

/// A gauge.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    register(must(IntGauge::new(name, help), name), name)
}

/// A gauge with labels.
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        must(IntGaugeVec::new(Opts::new(name, help), labels), name),
        name,
    )
}

/// A histogram with explicit buckets.
pub fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        must(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
            name,
        ),
        name,
    )
}

/// A histogram with labels.
pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register(
        must(
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
            name,
        ),
        name,
    )
}

/// Latency buckets in seconds, 0.5 ms .. 10 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

/// Size buckets (records per batch), 1 .. 10 000.
pub fn size_buckets() -> Vec<f64> {
    vec![
        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    ]
}

/// Renders every registered metric in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode(&prometheus::gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Rate-limited logging for per-record problems: at most one line per key per interval, with the
/// number of occurrences suppressed since the last line, so a flood of bad input cannot flood
/// the logs while every occurrence is still counted in a metric.
#[derive(Debug)]
pub struct LogLimiter {
    interval: std::time::Duration,
    state: std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            interval,
            state: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// `Some(suppressed)` when a line may be logged now for `key` (`suppressed` occurrences were
    /// not logged since the previous line); `None` to stay quiet.
    pub fn allow(&self, key: &'static str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut m = self.state.lock().ok()?;
        match m.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                m.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_lets_one_line_through_per_interval_and_counts_the_rest() {
        let l = LogLimiter::new(std::time::Duration::from_secs(3600));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
        let l = LogLimiter::new(std::time::Duration::ZERO);
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), Some(0));
    }
}
