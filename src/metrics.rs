//! Prometheus metrics: one recorder per process, rendered by the API's `/metrics` route.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. When another
/// recorder was installed first (a benchmark's), the handle renders what it has: nothing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was already installed");
        }
        handle
    })
}

/// Serve `/metrics` alone on `listener`: for `blast worker`, which has no API to carry it.
/// Runs until the process ends.
pub async fn serve_alone(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    handle();
    let upkeep = tokio::spawn(async {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticker.tick().await;
            handle().run_upkeep();
        }
    });
    let router =
        axum::Router::new().route("/metrics", axum::routing::get(crate::api::ops::metrics));
    let result = axum::serve(listener, router).await;
    upkeep.abort();
    result
}
