//! The HTTP glue: routes, handlers that only translate between actix and [`Transfers`], and the
//! server entry point.
//!
//! - `POST /files?name=<real name>`: upload (raw body), `201 Created` with `Location`.
//! - `GET` / `HEAD /files/<node>/<chat_type>/<YYYYMMDD>/<HH[.n]>/<file_name>/<real name>`: download.
//!
//! Anything else is a JSON 404.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;
use actix_web::{guard, web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;

use crate::error::Error;
use crate::transfer::Transfers;

/// How long a graceful stop waits for transfers in flight.
const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// Registers the routes of the node on an `App` (or a test service).
pub fn routes(transfers: web::Data<Transfers>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(transfers)
            .app_data(web::QueryConfig::default().error_handler(|e, _| Error::BadRequest(e.to_string()).into()))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }))
            .route("/files", web::post().to(upload))
            .route(
                "/files/{path:.*}",
                web::route().guard(guard::Any(guard::Get()).or(guard::Head())).to(download),
            )
            .default_service(web::to(|| async { Err::<HttpResponse, _>(Error::NotFound) }));
    }
}

async fn upload(
    request: HttpRequest,
    query: web::Query<UploadQuery>,
    body: web::Payload,
    transfers: web::Data<Transfers>,
) -> Result<HttpResponse, Error> {
    let headers = request.headers();
    let declared_len = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let uploaded = transfers
        .upload(header_str(headers, header::AUTHORIZATION), query.name.as_deref(), declared_len, body)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, uploaded.uri.as_str()))
        .json(uploaded))
}

async fn download(request: HttpRequest, transfers: web::Data<Transfers>) -> Result<HttpResponse, Error> {
    let with_body = request.method() != Method::HEAD;
    let download = transfers
        .download(header_str(request.headers(), header::AUTHORIZATION), request.uri().path(), with_body)
        .await?;
    let (media_type, disposition) = download.real_name.presentation();
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, media_type))
        .insert_header((header::CONTENT_DISPOSITION, download.real_name.content_disposition(disposition)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"));
    // A sized body, so that HEAD too answers with the file's Content-Length.
    Ok(match download.body {
        Some(body) => response.body(SizedStream::new(download.size, body)),
        None => response.body(SizedStream::new(download.size, futures_util::stream::empty::<io::Result<_>>())),
    })
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Serves the node on an already bound `listener` until `shutdown` completes, then stops
/// gracefully (transfers in flight get [`SHUTDOWN_TIMEOUT_SECS`] to finish).
pub async fn run(listener: TcpListener, transfers: Arc<Transfers>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let transfers = web::Data::from(transfers);
    let server = HttpServer::new(move || App::new().configure(routes(transfers.clone())))
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run();
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        stopped = &mut server => return stopped,
        () = shutdown => {}
    }
    log::info!("httpd stopping");
    // The server future carries out the stop command, so it is polled alongside.
    let ((), stopped) = tokio::join!(handle.stop(true), server);
    stopped
}
