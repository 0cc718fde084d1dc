//! Watching a running server (issue 12 §4): Prometheus metrics on their own address, and the
//! request id that every log line and every response of a request carries.
//!
//! **Metrics.** Recorded through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus` (no hand-written text format). A global recorder can be
//! installed once per process, and tests run many servers in one process, so the recorder
//! is installed once, process-wide ([`prometheus_handle`], a `OnceLock`), and every server
//! of the process shares it: counters only grow, and tests assert on differences. `/metrics`
//! is served on `[metrics] listen_addr` (loopback by default), never on the phones' port.
//! The series (all prefixed `fieldsync_`) are listed in [`describe_metrics`] and in
//! docs/operations.md.
//!
//! **Request ids.** [`request_layer`] gives each HTTP request and gRPC call an id (the
//! caller's `x-request-id` when it is a short token, e.g. nginx's `$request_id`; otherwise
//! `<process start, hex>-<counter, hex>`, which needs no randomness and never repeats within
//! a process), runs the request inside a `request` span carrying it, so every log line of
//! the request names it, and returns it as the `x-request-id` response header (gRPC: initial
//! metadata). The store's blocking calls re-enter the caller's span, so their lines carry
//! it too. Each request ends with a `debug` line (`request finished` with the HTTP status,
//! or `call finished` with the gRPC code, and the time taken): the access log, off at the
//! default `info` filter.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::settings::MetricsSettings;

/// Header (and gRPC metadata key) carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// gRPC calls, by `method` and `code` (counter).
pub const GRPC_REQUESTS: &str = "fieldsync_grpc_requests_total";
/// gRPC call latency in seconds, until the last byte of the response (histogram).
pub const GRPC_DURATION: &str = "fieldsync_grpc_request_duration_seconds";
/// Console and tus HTTP requests, by `class` of status (`2xx`, `4xx`, …) (counter).
pub const HTTP_REQUESTS: &str = "fieldsync_http_requests_total";
/// Push batches, by `outcome` (`committed`, `refused`) (counter).
pub const PUSHES: &str = "fieldsync_pushes_total";
/// Mutations of committed pushes, by `outcome` (`applied`, `duplicate`, `conflict_recorded`,
/// `rejected`) (counter).
pub const MUTATIONS: &str = "fieldsync_mutations_total";
/// Photo bytes written to staging files, gRPC and tus together (counter).
pub const UPLOAD_BYTES: &str = "fieldsync_upload_bytes_total";
/// Evidence flags set when a visit's flags were evaluated, by `flag` code (counter: a visit
/// evaluated again counts again).
pub const EVIDENCE_FLAGS: &str = "fieldsync_evidence_flags_total";
/// Time a write waited for the SQLite single writer (histogram, seconds).
pub const DB_WRITE_LOCK_WAIT: &str = "fieldsync_db_write_lock_wait_seconds";
/// Store calls handed to tokio's blocking pool and not finished yet (gauge): queued for a
/// blocking thread or running on one.
pub const DB_BLOCKING_IN_FLIGHT: &str = "fieldsync_db_blocking_calls_in_flight";
/// Tokio tasks alive (gauge, read at scrape time).
pub const RUNTIME_ALIVE_TASKS: &str = "fieldsync_runtime_alive_tasks";
/// Tasks waiting in tokio's global queue (gauge, read at scrape time).
pub const RUNTIME_GLOBAL_QUEUE: &str = "fieldsync_runtime_global_queue_depth";
/// Review queue (待审核) size: visits waiting for a decision, county-wide (gauge, read at
/// scrape time).
pub const REVIEW_QUEUE: &str = "fieldsync_review_queue_visits";
/// Photo uploads started and not complete (gauge, read at scrape time).
pub const UPLOAD_BACKLOG: &str = "fieldsync_upload_backlog";
/// 1 while serving, 0 while starting or shutting down (gauge): the readiness the gRPC
/// health service reports.
pub const READY: &str = "fieldsync_ready";

/// Latency buckets in seconds for every `_seconds` histogram: from a memoized read (under a
/// millisecond) to a large push or a slow 2G upload chunk.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// gRPC services whose method names may become labels; anything else a client makes up is
/// `other`, so a scanner cannot grow the series without bound.
const KNOWN_GRPC_PREFIXES: [&str; 3] =
    ["/fieldsync.v1.", "/grpc.health.v1.", "/grpc.reflection.v1."];

/// The process-wide Prometheus recorder, installed on first use. `None` when another
/// recorder was installed first (an embedding program's own), which is logged.
pub fn prometheus_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            {
                Ok(builder) => builder,
                Err(error) => {
                    tracing::error!(%error, "metrics disabled: bad histogram buckets");
                    return None;
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe_metrics();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics disabled: another recorder is installed");
                    None
                }
            }
        })
        .clone()
}

/// HELP texts of the series.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(GRPC_REQUESTS, "gRPC calls by method and status code");
    describe_histogram!(
        GRPC_DURATION,
        Unit::Seconds,
        "gRPC call latency by method and status code"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "console and tus HTTP requests by status class"
    );
    describe_counter!(PUSHES, "push batches by outcome");
    describe_counter!(MUTATIONS, "mutations of committed pushes by outcome");
    describe_counter!(UPLOAD_BYTES, Unit::Bytes, "photo bytes received");
    describe_counter!(EVIDENCE_FLAGS, "evidence flags set at evaluation, by flag");
    describe_histogram!(
        DB_WRITE_LOCK_WAIT,
        Unit::Seconds,
        "time waiting for the SQLite single writer"
    );
    describe_gauge!(
        DB_BLOCKING_IN_FLIGHT,
        "store calls queued for or running on the blocking pool"
    );
    describe_gauge!(RUNTIME_ALIVE_TASKS, "tokio tasks alive");
    describe_gauge!(RUNTIME_GLOBAL_QUEUE, "tokio global queue depth");
    describe_gauge!(REVIEW_QUEUE, "visits waiting for review, county-wide");
    describe_gauge!(UPLOAD_BACKLOG, "photo uploads started and not complete");
    describe_gauge!(READY, "1 while the server reports SERVING");
}

/// Bind the metrics address of `settings`, or `None` when metrics are off.
pub async fn bind_metrics_listener(
    settings: &MetricsSettings,
) -> std::io::Result<Option<tokio::net::TcpListener>> {
    if !settings.enabled {
        return Ok(None);
    }
    match tokio::net::TcpListener::bind(settings.listen_addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(error) => Err(std::io::Error::new(
            error.kind(),
            format!(
                "cannot listen for /metrics on {}: {error} (set [metrics] listen_addr, or enabled = false)",
                settings.listen_addr
            ),
        )),
    }
}

/// Count one push batch: `committed` with its mutations by outcome, or `refused` (the whole
/// batch failed: malformed, out of scope, storage trouble).
pub fn record_push(outcomes: Option<&[(u64, fieldsync_model::sync::MutationOutcome)]>) {
    use fieldsync_model::sync::MutationOutcome;
    let Some(outcomes) = outcomes else {
        metrics::counter!(PUSHES, "outcome" => "refused").increment(1);
        return;
    };
    metrics::counter!(PUSHES, "outcome" => "committed").increment(1);
    for (_, outcome) in outcomes {
        let label = match outcome {
            MutationOutcome::Applied => "applied",
            MutationOutcome::Duplicate => "duplicate",
            MutationOutcome::ConflictRecorded => "conflict_recorded",
            MutationOutcome::Rejected { .. } => "rejected",
        };
        metrics::counter!(MUTATIONS, "outcome" => label).increment(1);
    }
}

/// Count a store call entering the blocking pool; the guard counts it out when dropped.
pub fn blocking_call_started() -> BlockingCallGuard {
    metrics::gauge!(DB_BLOCKING_IN_FLIGHT).increment(1.0);
    BlockingCallGuard(())
}

/// See [`blocking_call_started`].
#[derive(Debug)]
pub struct BlockingCallGuard(());

impl Drop for BlockingCallGuard {
    fn drop(&mut self) {
        metrics::gauge!(DB_BLOCKING_IN_FLIGHT).decrement(1.0);
    }
}

/// Record how long a write waited for the writer connection.
pub fn record_write_lock_wait(waited: Duration) {
    metrics::histogram!(DB_WRITE_LOCK_WAIT).record(waited.as_secs_f64());
}

/// Set the readiness gauge.
pub fn record_ready(ready: bool) {
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// The text of `/metrics`: the gauges read at scrape time are refreshed first.
pub async fn render(handle: &PrometheusHandle, state: &crate::AppState) -> String {
    let runtime = tokio::runtime::Handle::current().metrics();
    metrics::gauge!(RUNTIME_ALIVE_TASKS).set(runtime.num_alive_tasks() as f64);
    metrics::gauge!(RUNTIME_GLOBAL_QUEUE).set(runtime.global_queue_depth() as f64);
    match state.store.operational_counts().await {
        Ok(counts) => {
            metrics::gauge!(REVIEW_QUEUE).set(counts.review_queue as f64);
            metrics::gauge!(UPLOAD_BACKLOG).set(counts.incomplete_uploads as f64);
        }
        // The rest of the page is still worth scraping; the gauges keep their last value.
        Err(error) => tracing::warn!(%error, "cannot read queue sizes for /metrics"),
    }
    handle.render()
}

/// The `/metrics` router of the metrics address.
pub fn metrics_router(handle: PrometheusHandle, state: crate::AppState) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            let state = state.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(&handle, &state).await,
                )
            }
        }),
    )
}

/// Serve `/metrics` on `listener` until `shutdown`; the exporter's histograms are drained
/// every few seconds meanwhile (what the exporter's own listener would do), so memory stays
/// flat however rarely Prometheus scrapes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    state: crate::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let address = listener.local_addr().ok();
    tracing::info!(address = ?address, "metrics listening on /metrics");
    let upkeep_handle = handle.clone();
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep_handle.run_upkeep();
        }
    });
    if let Err(error) = axum::serve(listener, metrics_router(handle, state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(%error, "metrics listener stopped");
    }
    upkeep.abort();
}

/// The per-request middleware on every route of the main port: request id and span, the
/// `x-request-id` response header, and the request metrics.
pub async fn request_layer(request: Request, next: Next) -> Response {
    let request_id = request_id_of(request.headers());
    let grpc_method = grpc_method_of(&request);
    let span = match &grpc_method {
        Some(method) => tracing::info_span!("request", request_id = %request_id, rpc = %method),
        None => tracing::info_span!("request", request_id = %request_id),
    };
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    match grpc_method {
        Some(method) => {
            // A trailers-only answer (every error tonic returns) has the code in its
            // headers; otherwise it comes in the trailers at the end of the body.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .map(grpc_code_name);
            let (parts, body) = response.into_parts();
            let body = Body::new(RecordedGrpcBody {
                inner: body,
                record: Some(GrpcRecord {
                    method,
                    started,
                    code,
                    span,
                }),
            });
            Response::from_parts(parts, body)
        }
        None => {
            let class = match response.status().as_u16() {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            };
            metrics::counter!(HTTP_REQUESTS, "class" => class).increment(1);
            span.in_scope(|| {
                tracing::debug!(
                    status = response.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request finished"
                );
            });
            response
        }
    }
}

/// The caller's request id when it is a short token, else a new one.
fn request_id_of(headers: &HeaderMap) -> String {
    let offered = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        });
    match offered {
        Some(id) => id.to_owned(),
        None => new_request_id(),
    }
}

/// `<process start in unix seconds, hex>-<counter, hex>`.
fn new_request_id() -> String {
    static PROCESS_START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let start = *PROCESS_START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    });
    format!("{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The gRPC method label of a request (`fieldsync.v1.Sync/Push`), `other` for a path of no
/// known service, or `None` when the request is not gRPC.
fn grpc_method_of(request: &Request) -> Option<String> {
    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"));
    if !is_grpc {
        return None;
    }
    let path = request.uri().path();
    let known = KNOWN_GRPC_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
        && path.len() <= 128
        && path.matches('/').count() == 2;
    Some(if known {
        path.trim_start_matches('/').to_owned()
    } else {
        "other".to_owned()
    })
}

/// The canonical name of a gRPC status code (`OK`, `INVALID_ARGUMENT`, …).
fn grpc_code_name(value: &str) -> &'static str {
    let code = value
        .parse::<i32>()
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One gRPC call's metrics, recorded once, when its response body ends or is dropped.
#[derive(Debug)]
struct GrpcRecord {
    method: String,
    started: Instant,
    /// Known from a trailers-only answer, or once the trailers arrive.
    code: Option<&'static str>,
    /// The call's `request` span, for its last log line.
    span: tracing::Span,
}

impl Drop for GrpcRecord {
    fn drop(&mut self) {
        // No code by the end: the client went away mid-stream (or the server was stopped).
        let code = self.code.unwrap_or("CANCELLED");
        let labels = [("method", self.method.clone()), ("code", code.to_owned())];
        metrics::counter!(GRPC_REQUESTS, &labels).increment(1);
        metrics::histogram!(GRPC_DURATION, &labels).record(self.started.elapsed().as_secs_f64());
        self.span.in_scope(|| {
            tracing::debug!(
                code,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "call finished"
            );
        });
    }
}

/// A gRPC response body that reads the status from the trailers as they pass.
struct RecordedGrpcBody {
    inner: Body,
    record: Option<GrpcRecord>,
}

impl HttpBody for RecordedGrpcBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(record) = self.record.as_mut()
                {
                    record.code = trailers
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .map(grpc_code_name)
                        .or(record.code);
                }
            }
            Poll::Ready(None) => {
                // The end: record now rather than whenever the body is dropped.
                if let Some(mut record) = self.record.take()
                    && record.code.is_none()
                {
                    record.code = Some("OK");
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_callers_short_token_or_new_and_distinct() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("nginx-abc.123"));
        assert_eq!(request_id_of(&headers), "nginx-abc.123");
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_static("has spaces and\"quotes"),
        );
        let generated = request_id_of(&headers);
        assert_ne!(generated, "has spaces and\"quotes");
        assert_ne!(request_id_of(&HeaderMap::new()), generated);
    }

    #[test]
    fn grpc_codes_have_their_canonical_names() {
        assert_eq!(grpc_code_name("0"), "OK");
        assert_eq!(grpc_code_name("3"), "INVALID_ARGUMENT");
        assert_eq!(grpc_code_name("14"), "UNAVAILABLE");
        assert_eq!(grpc_code_name("x"), "UNKNOWN");
    }
}
