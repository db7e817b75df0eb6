//! The HTTP glue: the transfer routes, handlers that only translate between actix and
//! [`TransferService`], and the server entry point, which serves them with [`crate::ops`]'s operations
//! endpoints. Their paths and methods are [`crate::route_table`]'s.
//!
//! - `POST /files[?name=<real name>]`: upload (raw body, or `multipart/form-data`), `201 Created`
//!   with `Location`; an `Idempotency-Key` makes a retry get the first answer.
//! - `GET` / `HEAD /files/<node>/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>/<real name>`: download
//!   (one `Range`, `ETag`, `If-None-Match`, `If-Range`).
//! - `PUT /upload/<slot path>`: fill an XEP-0363 external upload slot; `GET` / `HEAD` serve it
//!   (with an optional download capability: `mft_for`, `mft_to`, `mft_type`, `mft_cap`).
//! - `POST /shares`: the XMPP server's module reports that a slot URL was sent into a chat.
//! - `GET /healthz`: liveness; the other operations endpoints are [`crate::ops`]'s.
//!
//! The slot and download routes answer CORS (`actix-cors`) for the origins of
//! `http.cors_allowed_origins`: preflights for `PUT`, `GET` and `HEAD` with `Authorization` and
//! `Content-Type`, and `Access-Control-Allow-Origin` on every response, errors included, so that
//! browser XMPP clients can use them. A plain `OPTIONS` (no preflight) gets `204` and `Allow`.
//!
//! `docs/http-api.md` lists every status code and header.
//!
//! Anything else is a JSON 404.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::conditional::{Answer, Preconditions};
use crate::error::Error;
use crate::ops::Ops;
use crate::route_table::{self, methods_of, on, ROUTES};
use crate::share::CapabilityQuery;
use crate::slot::{SlotRequest, SLOT_PREFIX};
use crate::transfer::{Download, DownloadRequest, TransferService, Uploaded};

/// How long a graceful stop waits for transfers in flight.
const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// The CORS policy of the slot and download routes, for `origins` (`*`: any).
fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["PUT", "GET", "HEAD"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([
            header::CONTENT_DISPOSITION,
            header::CONTENT_RANGE,
            header::ETAG,
            header::LOCATION,
        ])
        // A page of another origin gets no CORS headers (its browser refuses it); other
        // clients, which send no Origin, are not affected.
        .block_on_origin_mismatch(false)
        .max_age(3600);
    origins
        .iter()
        .fold(cors, |cors, origin| match origin.as_str() {
            "*" => cors.allow_any_origin().send_wildcard(),
            origin => cors.allowed_origin(origin),
        })
}

/// The resource `path` (all its [`ROUTES`] methods, `OPTIONS` included) behind [`cors`]; a
/// plain `OPTIONS` that is not a preflight gets `204` with `Allow`.
fn with_cors(
    path: &'static str,
    origins: &[String],
    route: actix_web::Route,
) -> impl actix_web::dev::HttpServiceFactory {
    let allow = route_table::methods(path).join(", ");
    web::resource(path)
        .guard(methods_of(path, |_| true))
        .route(route)
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move {
                HttpResponse::NoContent()
                    .insert_header((header::ALLOW, allow))
                    .finish()
            }
        }))
        .wrap(cors(origins))
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlotQuery {
    v: Option<String>,
    v2: Option<String>,
    mft_for: Option<String>,
    mft_to: Option<String>,
    mft_type: Option<String>,
    mft_cap: Option<String>,
}

/// Registers the routes of the node on an `App` (or a test service).
pub fn routes(transfers: web::Data<TransferService>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let origins = transfers.config().http.cors_allowed_origins.clone();
        cfg.app_data(transfers)
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| Error::BadRequest(e.to_string()).into()),
            )
            .route(
                "/healthz",
                on("/healthz")
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/files", on("/files").to(upload))
            .service(with_cors(
                "/files/{path:.*}",
                &origins,
                on("/files/{path:.*}").to(download),
            ))
            .service(with_cors(
                "/upload/{path:.*}",
                &origins,
                on("/upload/{path:.*}").to(slot),
            ))
            .route("/shares", on("/shares").to(share))
            .default_service(web::to(not_routed));
    }
}

/// A request that no route took: 405 with `Allow` if its path is a route's (of [`ROUTES`]) and
/// only the method is wrong, else 404.
async fn not_routed(request: HttpRequest) -> Result<HttpResponse, Error> {
    let path = request.path();
    let route = ROUTES
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix("{path:.*}") {
            Some(prefix) => path.starts_with(prefix),
            None => path == *pattern,
        });
    Err(match route {
        Some((_, methods)) => Error::MethodNotAllowed(methods),
        None => Error::NotFound,
    })
}

async fn upload(
    request: HttpRequest,
    query: web::Query<UploadQuery>,
    body: web::Payload,
    transfers: web::Data<TransferService>,
) -> Result<HttpResponse, Error> {
    let headers = request.headers();
    let idempotency_key = header_str(headers, header::HeaderName::from_static("idempotency-key"));
    let ticket = transfers.admit_upload(
        header_str(headers, header::AUTHORIZATION),
        idempotency_key,
        content_length(headers),
    )?;
    let is_multipart = header_str(headers, header::CONTENT_TYPE)
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    let uploaded = if is_multipart {
        let mut form = actix_multipart::Multipart::new(headers, body);
        let part = file_part(&mut form).await?;
        let name = query
            .name
            .clone()
            .or_else(|| part.content_disposition().and_then(disposition_filename));
        transfers.upload(ticket, name.as_deref(), part).await?
    } else {
        let name = query.name.clone().or_else(|| {
            let value = headers.get(header::CONTENT_DISPOSITION)?;
            disposition_filename(&header::ContentDisposition::from_raw(value).ok()?)
        });
        transfers.upload(ticket, name.as_deref(), body).await?
    };
    Ok(created(uploaded))
}

/// The most bytes of form fields skipped before the file part of a multipart upload.
const MAX_SKIPPED_FORM_BYTES: usize = 64 * 1024;

/// The first part of a multipart form that carries a file name; other parts before it are
/// read and dropped (at most [`MAX_SKIPPED_FORM_BYTES`]).
async fn file_part(form: &mut actix_multipart::Multipart) -> Result<actix_multipart::Field, Error> {
    let bad = |e: actix_multipart::MultipartError| {
        Error::BadRequest(format!("the multipart body is malformed: {e}"))
    };
    let mut skipped = 0;
    while let Some(part) = form.next().await {
        let mut part = part.map_err(bad)?;
        if part
            .content_disposition()
            .is_some_and(|d| d.get_filename().is_some() || d.get_filename_ext().is_some())
        {
            return Ok(part);
        }
        while let Some(chunk) = part.next().await {
            skipped += chunk.map_err(bad)?.len();
            if skipped > MAX_SKIPPED_FORM_BYTES {
                return Err(Error::BadRequest(
                    "the form fields before the file part are too large".into(),
                ));
            }
        }
    }
    Err(Error::MissingName)
}

/// The file name of a `Content-Disposition`: `filename*` (RFC 5987, UTF-8) before `filename`.
fn disposition_filename(disposition: &header::ContentDisposition) -> Option<String> {
    match disposition.get_filename_ext() {
        Some(ext)
            if ext.charset == header::Charset::Ext("UTF-8".into())
                || ext.charset == header::Charset::Ext("utf-8".into()) =>
        {
            String::from_utf8(ext.value.clone()).ok()
        }
        _ => disposition.get_filename().map(str::to_owned),
    }
}

fn created(uploaded: Uploaded) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, uploaded.uri.as_str()))
        .insert_header(("Repr-Digest", repr_digest(&uploaded.sha256)))
        .json(uploaded)
}

/// The `Repr-Digest` field (RFC 9530) of a SHA-256 given in hex: `sha-256=:<base64>:`.
fn repr_digest(sha256_hex: &str) -> String {
    use base64::Engine;
    let bytes = hex::decode(sha256_hex).expect("the store gives the digest in hex");
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

async fn download(
    request: HttpRequest,
    transfers: web::Data<TransferService>,
) -> Result<HttpResponse, Error> {
    let download = transfers
        .download(request.uri().path(), &download_request(&request))
        .await?;
    Ok(download_response(download))
}

/// `PUT` fills an XEP-0363 slot; `GET` and `HEAD` serve it (no credentials: a capability URL).
async fn slot(
    request: HttpRequest,
    query: web::Query<SlotQuery>,
    body: web::Payload,
    transfers: web::Data<TransferService>,
) -> Result<HttpResponse, Error> {
    let raw_path = request
        .uri()
        .path()
        .strip_prefix(SLOT_PREFIX)
        .unwrap_or_default();
    if request.method() != Method::PUT {
        let capability = CapabilityQuery {
            mft_for: query.mft_for.as_deref(),
            mft_to: query.mft_to.as_deref(),
            mft_type: query.mft_type.as_deref(),
            mft_cap: query.mft_cap.as_deref(),
        };
        let download = transfers
            .download_slot(raw_path, &capability, &download_request(&request))
            .await?;
        return Ok(download_response(download));
    }
    let headers = request.headers();
    let slot_request = SlotRequest {
        v: query.v.as_deref(),
        v2: query.v2.as_deref(),
        authorization: header_str(headers, header::AUTHORIZATION),
        content_length: content_length(headers),
        content_type: header_str(headers, header::CONTENT_TYPE),
    };
    Ok(created(
        transfers.upload_slot(raw_path, &slot_request, body).await?,
    ))
}

/// A share report from the XMPP server's module: `200` with what it recorded.
async fn share(
    request: HttpRequest,
    transfers: web::Data<TransferService>,
) -> Result<HttpResponse, Error> {
    let shared = transfers
        .share(header_str(request.headers(), header::AUTHORIZATION))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "recorded": shared })))
}

fn download_request(request: &HttpRequest) -> DownloadRequest<'_> {
    let headers = request.headers();
    DownloadRequest {
        authorization: header_str(headers, header::AUTHORIZATION),
        with_body: request.method() != Method::HEAD,
        preconditions: Preconditions {
            range: header_str(headers, header::RANGE),
            if_none_match: header_str(headers, header::IF_NONE_MATCH),
            if_range: header_str(headers, header::IF_RANGE),
        },
    }
}

/// The response to a download: status from its [`Answer`], validators, and the safe
/// presentation headers (inline only for media and plain text, `nosniff`, a CSP that runs
/// nothing).
fn download_response(download: Download) -> HttpResponse {
    let (media_type, disposition) = download.real_name.presentation();
    let (_, length) = download.answer.span(download.size);
    let mut response = HttpResponse::build(match download.answer {
        Answer::NotModified => StatusCode::NOT_MODIFIED,
        Answer::Full => StatusCode::OK,
        Answer::Partial { .. } => StatusCode::PARTIAL_CONTENT,
        Answer::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
    });
    response
        .insert_header((header::ETAG, download.validators.etag))
        .insert_header((header::LAST_MODIFIED, download.validators.last_modified))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ));
    if download.answer == Answer::NotModified {
        return response.finish();
    }
    if let Answer::Partial { start, end } = download.answer {
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{}", download.size),
        ));
    }
    response
        .insert_header((header::CONTENT_TYPE, media_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            download.real_name.content_disposition(disposition),
        ));
    // A sized body, so that HEAD too answers with the Content-Length.
    match download.body {
        Some(body) => response.body(SizedStream::new(length, body)),
        None => response.body(SizedStream::new(
            length,
            futures_util::stream::empty::<io::Result<_>>(),
        )),
    }
}

/// Sets TCP_USER_TIMEOUT to `timeout` on `listener`; Linux copies it to every connection accepted
/// from it, plain HTTP and TLS alike. A connection whose sent data stays unacknowledged that long
/// is then aborted, and since Linux 5.1 that includes a peer that keeps its receive window shut
/// (a client that stopped reading a download): the response is dropped, its `Get` row records
/// the bytes sent, and its transfer slot is freed.
fn bound_unacknowledged_sends(listener: &TcpListener, timeout: Duration) {
    use nix::sys::socket::{setsockopt, sockopt::TcpUserTimeout};
    let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    if let Err(e) = setsockopt(listener, TcpUserTimeout, &millis) {
        log::warn!(
            "cannot set TCP_USER_TIMEOUT on the listening socket: {e}; a client that stops reading a download keeps its transfer slot"
        );
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

/// Serves the node (transfers, and the operations endpoints of `ops`) on an already bound
/// `listener` until `shutdown` completes, then stops gracefully (transfers in flight get
/// [`SHUTDOWN_TIMEOUT_SECS`] to finish). `http.request_timeout_secs` bounds a request's headers,
/// a stalled upload body, and how long sent data may stay unacknowledged
/// (TCP_USER_TIMEOUT: `bound_unacknowledged_sends`).
pub async fn run(
    listener: TcpListener,
    transfers: Arc<TransferService>,
    ops: Arc<Ops>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let http = &transfers.config().http;
    let tls = match transfers
        .secrets()
        .tls_config(http)
        .map_err(io::Error::other)?
    {
        Some(tls) => Some(tls),
        None => {
            let addr = listener.local_addr()?;
            if !addr.ip().is_loopback() {
                log::warn!("serving plain HTTP on {addr}: set http.tls_certificate and http.tls_key unless a TLS reverse proxy is in front");
            }
            None
        }
    };
    let timeout = Duration::from_secs(http.request_timeout_secs);
    bound_unacknowledged_sends(&listener, timeout);
    let purge = actix_web::rt::spawn(crate::transfer::purge_every_minute(transfers.clone()));
    let sweep = actix_web::rt::spawn(crate::transfer::sweep_partials_once(transfers.clone()));
    let transfers = web::Data::from(transfers);
    let ops = web::Data::from(ops);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::ops::observe))
            .configure(routes(transfers.clone()))
            .configure(crate::ops::routes(ops.clone()))
    })
    // Without TCP_NODELAY a keep-alive response whose body follows its headers in a second
    // small write waits for the client's delayed ACK: 40 ms per download on Linux.
    .tcp_nodelay(true)
    .client_request_timeout(timeout);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    let server = server
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run();
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    let stopped = tokio::select! {
        stopped = &mut server => stopped,
        () = shutdown => {
            log::info!("httpd stopping");
            // The server future carries out the stop command, so it is polled alongside.
            tokio::join!(handle.stop(true), server).1
        }
    };
    purge.abort();
    sweep.abort();
    stopped
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use actix_web::test::{self, TestRequest};
    use actix_web::{middleware, App};

    use super::*;
    use crate::audit::memory::MemoryAuditLog;
    use crate::node_status::tests::logd_status;
    use crate::ops::tests::{config, ops, FixedLogd};
    use crate::store::Mount;
    use crate::transfer::SystemClock;

    /// The whole app, as [`run`] builds it, except for a default service that answers 418, so
    /// that a request no route took is told apart from a route's own 404.
    macro_rules! whole_app {
        ($dir:expr) => {{
            let dir: &std::path::Path = $dir;
            let ops = web::Data::new(ops(dir, FixedLogd(Some(logd_status(&[])))));
            let audit = Arc::new(MemoryAuditLog::default());
            let transfers = web::Data::new(TransferService::new(
                config(dir),
                Mount::Directory,
                audit,
                Arc::new(SystemClock),
            ));
            test::init_service(
                App::new()
                    .wrap(middleware::from_fn(crate::ops::observe))
                    .configure(routes(transfers))
                    .configure(crate::ops::routes(ops))
                    .default_service(web::to(HttpResponse::ImATeapot)),
            )
            .await
        }};
    }

    /// Fills a route pattern's parameters with sample values.
    fn sample_path(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "sample"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[actix_web::test]
    async fn the_openapi_document_describes_exactly_the_registered_routes() {
        let document: serde_json::Value = serde_json::from_str(crate::ops::OPENAPI).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.0."));
        let documented: BTreeMap<String, Vec<String>> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(|m| m.to_uppercase());
                (path.clone(), methods.collect())
            })
            .collect();
        // OpenAPI writes `{path}` where actix writes `{path:.*}`.
        let openapi_path = |pattern: &str| pattern.replace(":.*}", "}");
        let registered: BTreeMap<String, Vec<String>> = ROUTES
            .iter()
            .map(|(path, methods)| {
                (
                    openapi_path(path),
                    methods.iter().map(|m| m.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(documented, registered);

        // And the route table is what the app serves: every listed method reaches a route, any
        // other method on the same path falls through to the default service.
        let dir = tempfile::tempdir().unwrap();
        let app = whole_app!(dir.path());
        let all = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
        for (pattern, methods) in ROUTES {
            for method in all {
                let request = TestRequest::default()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(&sample_path(pattern))
                    .to_request();
                let status = test::call_service(&app, request).await.status();
                let routed = status != StatusCode::IM_A_TEAPOT;
                assert_eq!(
                    routed,
                    methods.contains(&method),
                    "{method} {pattern}: {status}"
                );
            }
        }
    }
}
