//! The operations endpoints, for operators, monitoring and load balancers:
//!
//! - `GET /status`: the node's [`NodeStatus`] as JSON (always 200: it is a report), or as HTML
//!   when the request prefers `text/html`; `GET /status.html` is always the HTML page.
//! - `GET /readyz`: the same report, 200 when it is `ok` and 503 when not.
//! - `GET /metrics`: the Prometheus exposition ([`Metrics`]).
//! - `GET /openapi.json`: the API description kept in `httpd/openapi.json`.
//!
//! `/healthz` (liveness) is registered with the transfer routes (`http`). These
//! endpoints carry no credentials: they reveal the node's health and volumes, not files or
//! users; operators who do not want them public restrict them at the reverse proxy
//! (`docs/operations-endpoints.md`).
//!
//! [`Ops`] observes (fsd's status file, logd's `status` with a short timeout, the mount) and
//! hands the observations to [`NodeStatus::assemble`]; [`observe`] times every request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use fsd::status::{FsdStatus, StatusError};
use futures_util::future::BoxFuture;
use logd::{LogdClient, LogdError, LogdStatus};
use mft_config::{NodeConfig, TransferMode};

use crate::admission::Admission;
use crate::metrics::{Metrics, TransferCounters, CONTENT_TYPE};
use crate::node_status::{NodeStatus, Observations};
use crate::route_table::on;
use crate::status_page;
use crate::store::Mount;

/// The API description served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// How long the status report waits for logd, and for the mount to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where logd's own report comes from: the logd client, or a double in tests.
pub trait LogdProbe: Send + Sync + 'static {
    fn status(&self) -> BoxFuture<'_, Result<LogdStatus, LogdError>>;
}

impl LogdProbe for LogdClient {
    fn status(&self) -> BoxFuture<'_, Result<LogdStatus, LogdError>> {
        Box::pin(LogdClient::status(self))
    }
}

/// What the operations endpoints know of the node.
pub struct Ops {
    node_id: String,
    transfer_mode: TransferMode,
    mount_point: PathBuf,
    mount: Mount,
    fsd_status_file: PathBuf,
    logd: Arc<dyn LogdProbe>,
    counters: Arc<TransferCounters>,
    metrics: Metrics,
    admission: Arc<Admission>,
    mount_looks: MountLooks,
}

impl Ops {
    /// The endpoints of the node `config` describes, whose mount point must be as `mount` says;
    /// every report they make updates `admission`.
    pub fn new(
        config: &NodeConfig,
        mount: Mount,
        logd: Arc<dyn LogdProbe>,
        counters: Arc<TransferCounters>,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            node_id: config.node.id.clone(),
            transfer_mode: config.node.transfer_mode,
            mount_point: config.file_server.mount_point.clone(),
            mount,
            fsd_status_file: config.fsd.status_file.clone(),
            logd,
            metrics: Metrics::new(counters.clone()),
            counters,
            admission,
            mount_looks: MountLooks::default(),
        }
    }

    /// Observes the node now (each probe bounded by [`PROBE_TIMEOUT`]), updates the admission
    /// of uploads, and reports.
    pub async fn status(&self) -> NodeStatus {
        let turn = self.admission.turn();
        let mut report = self.observe().await;
        self.admission.observe(turn, &report);
        report.uploads = self.admission.report();
        report
    }

    async fn observe(&self) -> NodeStatus {
        let (mount_point, mount, status_file) = (
            self.mount_point.clone(),
            self.mount,
            self.fsd_status_file.clone(),
        );
        let mounted = self
            .mount_looks
            .look(move || mount.check(&mount_point).is_ok());
        let fsd = run_blocking(move || FsdStatus::load(&status_file));
        let logd = async {
            tokio::time::timeout(PROBE_TIMEOUT, self.logd.status())
                .await
                .unwrap_or_else(|_| {
                    Err(LogdError::Unavailable(format!(
                        "no status reply within {PROBE_TIMEOUT:?}"
                    )))
                })
        };
        let (mounted, fsd, logd) = tokio::join!(mounted, fsd, logd);
        NodeStatus::assemble(Observations {
            node_id: self.node_id.clone(),
            transfer_mode: self.transfer_mode,
            mount_point: self.mount_point.display().to_string(),
            // A mount point that does not answer in time is as good as not mounted.
            mounted: mounted.unwrap_or(false),
            fsd: fsd.unwrap_or_else(|| {
                Err(StatusError::Io {
                    path: self.fsd_status_file.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "reading timed out"),
                })
            }),
            logd,
            counters: self.counters.snapshot(),
            now: chrono::Utc::now(),
        })
    }
}

/// Looks at the mount point on the blocking pool, each look bounded by [`PROBE_TIMEOUT`]. A look
/// still running after that is stuck (a hung mount) until it ends; while one is, a new look
/// answers `None` (not answering) at once instead of blocking one more thread.
#[derive(Debug, Default)]
struct MountLooks {
    stuck: Arc<AtomicUsize>,
}

impl MountLooks {
    async fn look(&self, check: impl FnOnce() -> bool + Send + 'static) -> Option<bool> {
        const RUNNING: u8 = 0;
        const ENDED: u8 = 1;
        const STUCK: u8 = 2;
        if self.stuck.load(Ordering::SeqCst) > 0 {
            return None;
        }
        // This look's state, decided by whichever comes first: the look ending, or the wait
        // for it timing out.
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (look_state, stuck) = (state.clone(), self.stuck.clone());
        let seen = run_blocking(move || {
            let seen = check();
            if look_state.swap(ENDED, Ordering::SeqCst) == STUCK {
                stuck.fetch_sub(1, Ordering::SeqCst);
            }
            seen
        })
        .await;
        if seen.is_none()
            && state
                .compare_exchange(RUNNING, STUCK, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.stuck.fetch_add(1, Ordering::SeqCst);
        }
        seen
    }
}

/// Runs `f` on the blocking pool, giving up (None) after [`PROBE_TIMEOUT`]: a hung FUSE mount
/// blocks every system call on it.
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::time::timeout(PROBE_TIMEOUT, tokio::task::spawn_blocking(f))
        .await
        .ok()?
        .ok()
}

/// Registers the operations endpoints (see the module documentation).
pub fn routes(ops: web::Data<Ops>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(ops)
            .route("/status", on("/status").to(status))
            .route("/status.html", on("/status.html").to(status_html))
            .route("/readyz", on("/readyz").to(readyz))
            .route("/metrics", on("/metrics").to(metrics))
            .route("/openapi.json", on("/openapi.json").to(openapi));
    }
}

async fn status(request: HttpRequest, ops: web::Data<Ops>) -> HttpResponse {
    let report = ops.status().await;
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if status_page::prefers_html(accept) {
        html(&report)
    } else {
        HttpResponse::Ok().json(report)
    }
}

async fn status_html(ops: web::Data<Ops>) -> HttpResponse {
    html(&ops.status().await)
}

fn html(report: &NodeStatus) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .body(status_page::render(report))
}

async fn readyz(ops: web::Data<Ops>) -> HttpResponse {
    let report = ops.status().await;
    let code = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(code).json(report)
}

async fn metrics(ops: web::Data<Ops>) -> HttpResponse {
    let report = ops.status().await;
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(ops.metrics.encode(&report.alarms))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI)
}

/// Middleware: records every request's latency (to the response head) in the metrics, by the
/// route it matched.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let ops = request.app_data::<web::Data<Ops>>().cloned();
    let method = request.method().clone();
    let response = next.call(request).await;
    if let Some(ops) = ops {
        let (route, status) = match &response {
            Ok(response) => (response.request().match_pattern(), response.status()),
            Err(e) => (None, e.as_response_error().status_code()),
        };
        ops.metrics.observe_request(
            route.as_deref(),
            method.as_str(),
            status.as_u16(),
            started.elapsed(),
        );
    }
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use actix_web::test::{self, TestRequest};
    use actix_web::{middleware, App};

    use mft_config::fixture::NodeConfigText;

    use super::*;
    use crate::node_status::tests::{fsd_status, logd_status};

    /// A logd double that answers with a fixed report, or not at all.
    pub(crate) struct FixedLogd(pub(crate) Option<LogdStatus>);

    impl LogdProbe for FixedLogd {
        fn status(&self) -> BoxFuture<'_, Result<LogdStatus, LogdError>> {
            Box::pin(async move {
                match &self.0 {
                    Some(status) => Ok(status.clone()),
                    None => std::future::pending().await,
                }
            })
        }
    }

    /// A look stuck on a hung mount answers `None` after the timeout, and until it ends every
    /// new look answers `None` at once without running; then looks run again.
    #[actix_web::test]
    async fn a_stuck_look_at_the_mount_blocks_no_second_thread() {
        let looks = MountLooks::default();
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        assert_eq!(looks.look(move || hung.recv().is_ok()).await, None);
        assert!(started.elapsed() >= PROBE_TIMEOUT);
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let second = ran.clone();
        assert_eq!(
            looks
                .look(move || second.swap(true, Ordering::SeqCst))
                .await,
            None
        );
        assert!(
            !ran.load(Ordering::SeqCst),
            "a second look ran while the first was stuck"
        );
        release.send(()).unwrap();
        for _ in 0..200 {
            if looks.stuck.load(Ordering::SeqCst) == 0 {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(looks.look(|| true).await, Some(true));
    }

    /// The operations of a node whose mount point and fsd status file are under `dir`, with
    /// counters of their own.
    pub(crate) fn ops(dir: &std::path::Path, logd: FixedLogd) -> Ops {
        let counters = Arc::new(TransferCounters::new(
            Duration::from_secs(60),
            Box::new(Instant::now),
        ));
        Ops::new(
            &config(dir),
            Mount::Directory,
            Arc::new(logd),
            counters,
            Arc::default(),
        )
    }

    /// A node whose mount point and fsd status file are under `dir`.
    pub(crate) fn config(dir: &std::path::Path) -> NodeConfig {
        NodeConfig::parse(
            &NodeConfigText::new()
                .set(
                    "file_server",
                    "mount_point",
                    dir.join("mnt").display().to_string(),
                )
                .set(
                    "fsd",
                    "status_file",
                    dir.join("fsd-status.json").display().to_string(),
                )
                .text(),
        )
        .unwrap()
    }

    /// The operations endpoints as `http::run` serves them, timed by [`observe`].
    macro_rules! app {
        ($dir:expr, $logd:expr) => {{
            let dir: &std::path::Path = $dir;
            let ops = web::Data::new(ops(dir, $logd));
            test::init_service(
                App::new()
                    .wrap(middleware::from_fn(observe))
                    .configure(routes(ops)),
            )
            .await
        }};
    }

    #[actix_web::test]
    async fn status_reports_without_failing_when_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let app = app!(dir.path(), FixedLogd(None));
        let started = Instant::now();
        let response =
            test::call_service(&app, TestRequest::get().uri("/status").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            started.elapsed() < PROBE_TIMEOUT * 2,
            "logd's silence is bounded"
        );
        let report: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(report["ok"], false);
        assert_eq!(report["fsd"]["state"], "not_running");
        assert_eq!(report["logd"]["reachable"], false);
        assert_eq!(report["mount"]["mounted"], false);
        assert_eq!(report["alarms"], serde_json::json!(["MftExtFsMountError"]));

        let response =
            test::call_service(&app, TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[actix_web::test]
    async fn a_healthy_node_is_ready_and_its_page_and_metrics_say_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        fsd_status(&now, &[])
            .store(&dir.path().join("fsd-status.json"))
            .unwrap();
        let app = app!(dir.path(), FixedLogd(Some(logd_status(&[]))));

        let response =
            test::call_service(&app, TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let report: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(
            (report["ok"].as_bool(), report["node_id"].as_str()),
            (Some(true), Some("node_1"))
        );

        let browser = TestRequest::get()
            .uri("/status")
            .insert_header((header::ACCEPT, "text/html,*/*;q=0.8"));
        let response = test::call_service(&app, browser.to_request()).await;
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/html; charset=utf-8"
        );
        let page = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        assert!(
            page.contains("MFT node node_1: <span class=\"good\">OK</span>"),
            "{page}"
        );

        let response =
            test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            CONTENT_TYPE
        );
        let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        assert!(
            text.contains("mft_alarm{name=\"MftExtFsMountError\"} 0"),
            "{text}"
        );
        assert!(text.contains("mft_files_uploaded_total 0"), "{text}");
        // The requests above were timed by route.
        assert!(
            text.contains("mft_http_request_duration_seconds_count{route=\"/readyz\",method=\"GET\",status=\"2xx\"} 1"),
            "{text}"
        );
    }

    #[actix_web::test]
    async fn openapi_is_served_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let app = app!(dir.path(), FixedLogd(None));
        let response =
            test::call_service(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let served: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(
            served,
            serde_json::from_str::<serde_json::Value>(OPENAPI).unwrap()
        );
    }
}
