//! The admin HTTP server every service runs: `/healthz` (the process is alive), `/readyz` (every
//! dependency the service needs answered on its last check) and `/metrics` (Prometheus text).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio_util::sync::CancellationToken;
use warp::{http::StatusCode, Filter};

/// Dependency readiness, by name (`kafka`, `cassandra`, `registry`, `twitch`, …).
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Check {
    ok: bool,
    detail: String,
}

impl Readiness {
    /// A readiness set where every named dependency starts "not ready".
    pub fn new(deps: &[&'static str]) -> Self {
        let r = Self::default();
        for d in deps {
            r.set(d, false, "not checked yet");
        }
        r
    }

    /// Records the outcome of a check.
    pub fn set(&self, dep: &'static str, ok: bool, detail: impl Into<String>) {
        if let Ok(mut m) = self.checks.lock() {
            m.insert(
                dep,
                Check {
                    ok,
                    detail: detail.into(),
                },
            );
        }
    }

    /// True when every dependency is ready.
    pub fn is_ready(&self) -> bool {
        self.checks
            .lock()
            .map(|m| m.values().all(|c| c.ok))
            .unwrap_or(false)
    }

    fn snapshot(&self) -> serde_json::Value {
        let m = self.checks.lock().map(|m| m.clone()).unwrap_or_default();
        serde_json::json!({ "ready": m.values().all(|c| c.ok), "checks": m })
    }
}

/// Re-checks one dependency every `interval` until `token` is cancelled and records the outcome
/// for `/readyz` (`Ok(detail)` ready, `Err(why)` not ready). Spawn one per dependency.
pub async fn watch<F, Fut>(
    readiness: Readiness,
    dep: &'static str,
    interval: std::time::Duration,
    token: CancellationToken,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    loop {
        match check().await {
            Ok(detail) => readiness.set(dep, true, detail),
            Err(why) => {
                if readiness
                    .checks
                    .lock()
                    .map(|m| m.get(dep).is_none_or(|c| c.ok))
                    .unwrap_or(true)
                {
                    tracing::warn!(dependency = dep, error = %format!("{why:#}"), "dependency not reachable; /readyz reports it");
                }
                readiness.set(dep, false, format!("{why:#}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = token.cancelled() => return Ok(()),
        }
    }
}

/// Binds the admin server on `addr` and serves it until `token` is cancelled.
/// Returns the bound address (useful with port 0) and the serving future.
pub async fn serve(
    addr: &str,
    readiness: Readiness,
    token: CancellationToken,
) -> anyhow::Result<(
    SocketAddr,
    futures::future::BoxFuture<'static, anyhow::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin server: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| String::from("ok"));
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let snap = readiness.snapshot();
        let status = if snap["ready"] == true {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(warp::reply::json(&snap), status)
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(|| {
        warp::reply::with_header(
            crate::telemetry::render(),
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        )
    });
    let routes = healthz.or(readyz).or(metrics);
    let fut = async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(token.cancelled_owned())
            .run()
            .await;
        Ok(())
    };
    Ok((local, Box::pin(fut)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn watch_follows_the_dependency_both_ways() {
        let r = Readiness::new(&["kafka"]);
        let token = CancellationToken::new();
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        // Down on the first check, up on the second, down again from the third on.
        let task = tokio::spawn(watch(
            r.clone(),
            "kafka",
            std::time::Duration::from_secs(5),
            token.clone(),
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 1 {
                        Ok("up".to_string())
                    } else {
                        Err(anyhow::anyhow!("down"))
                    }
                }
            },
        ));
        let mut seen = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            seen.push(r.is_ready());
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
        assert_eq!(seen, vec![false, true, false]);
        assert_eq!(r.snapshot()["checks"]["kafka"]["detail"], "down");
        token.cancel();
        task.await.expect("join").expect("clean stop");
    }
}
