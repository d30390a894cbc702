//! `serve --http 127.0.0.1:PORT`: `/healthz` and `/metrics` (Prometheus
//! text) for a local monitor. Loopback only: the numbers are harmless, but
//! nothing of the sidecar is meant to be reachable from the network.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;

use crate::serve::Sidecar;

/// Why `--http` cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address is not a loopback address.
    #[error(
        "--http {0} is not a loopback address; use 127.0.0.1:PORT or [::1]:PORT (the endpoints are for local \
         monitoring only)"
    )]
    NotLoopback(SocketAddr),
    /// The port cannot be bound.
    #[error("cannot listen on {addr} for --http: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Binds `addr`, refusing anything but loopback.
///
/// # Errors
///
/// [`MetricsError::NotLoopback`] or [`MetricsError::Bind`].
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback(addr));
    }
    tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })
}

/// The routes, over `sidecar`.
pub fn app(sidecar: Arc<Sidecar>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(sidecar)
}

/// Serves [`app`] on `listener` until the sidecar shuts down.
pub async fn serve(listener: tokio::net::TcpListener, sidecar: Arc<Sidecar>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    let shutdown = sidecar.shutdown.clone();
    let served = axum::serve(listener, app(sidecar)).with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(err) = served.await {
        tracing::warn!(error = %err, "the metrics endpoint stopped");
    }
}

async fn healthz(State(sidecar): State<Arc<Sidecar>>) -> impl IntoResponse {
    let status = sidecar.status().await;
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": status["version"],
        "token_configured": status["token_configured"],
        "queue_depth": status["queue"]["depth"],
        "last_error": status["last_error"],
    }))
}

async fn metrics(State(sidecar): State<Arc<Sidecar>>) -> impl IntoResponse {
    let text = render(&sidecar.status().await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// The Prometheus text exposition of a `status` object.
fn render(status: &Value) -> String {
    let number = |value: &Value| value.as_f64().unwrap_or(0.0);
    let metrics: [(&str, &str, &str, f64); 7] = [
        (
            "omp_discord_delivered_total",
            "counter",
            "Messages delivered to Discord since the sidecar started.",
            number(&status["delivered"]),
        ),
        (
            "omp_discord_failed_total",
            "counter",
            "Messages Discord refused since the sidecar started.",
            number(&status["failed"]),
        ),
        (
            "omp_discord_pending",
            "gauge",
            "Messages journaled and waiting for delivery.",
            number(&status["queue"]["depth"]),
        ),
        (
            "omp_discord_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest waiting message (0 when none waits).",
            number(&status["queue"]["oldest_age_secs"]),
        ),
        ("omp_discord_clients", "gauge", "Connected OMP processes and CLI clients.", number(&status["clients"])),
        ("omp_discord_uptime_seconds", "gauge", "Seconds since the sidecar started.", number(&status["uptime_secs"])),
        (
            "omp_discord_token_configured",
            "gauge",
            "1 when a bot token is configured.",
            f64::from(u8::from(status["token_configured"] == true)),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    let version = status["version"].as_str().unwrap_or_default().replace(['"', '\\', '\n'], "");
    let _ = writeln!(
        out,
        "# HELP omp_discord_build_info The sidecar's version.\n# TYPE omp_discord_build_info gauge\n\
         omp_discord_build_info{{version=\"{version}\"}} 1"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_is_accepted() {
        let err = bind("0.0.0.0:9464".parse().unwrap()).await.unwrap_err();
        assert!(matches!(err, MetricsError::NotLoopback(_)) && err.to_string().contains("127.0.0.1:PORT"), "{err}");
        assert!(bind("127.0.0.1:0".parse().unwrap()).await.is_ok());
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let status = serde_json::json!({
            "version": "0.1.0", "delivered": 7, "failed": 1, "clients": 2, "uptime_secs": 30,
            "token_configured": true, "queue": {"depth": 3, "oldest_age_secs": 12},
        });
        let text = render(&status);
        for line in [
            "# TYPE omp_discord_delivered_total counter",
            "omp_discord_delivered_total 7",
            "omp_discord_failed_total 1",
            "omp_discord_pending 3",
            "omp_discord_oldest_pending_age_seconds 12",
            "omp_discord_clients 2",
            "omp_discord_uptime_seconds 30",
            "omp_discord_token_configured 1",
            "omp_discord_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
    }
}
