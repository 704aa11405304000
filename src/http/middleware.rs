//! Cross-cutting HTTP behaviour: security headers, the access log with metrics, the origin
//! guard, and the Engine.IO bookkeeping of the drain.
//!
//! Everything here sees requests before any authentication, so nothing here may keep what a
//! client chose: metric labels are folded into fixed sets, the Engine.IO table records only
//! upgrades Engine.IO accepted, and refusals are logged at debug with a throttled summary.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::error_code::ErrorCode;
use crate::listener::Connection;
use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;
use crate::telemetry::Throttled;

/// Paths polled by machines (probes, scrapers, Engine.IO long-polling); logged at debug so
/// they do not drown the access log.
fn is_chatty(path: &str) -> bool {
    path.starts_with("/health")
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
        || path.starts_with("/socket.io")
}

/// The route template that served a request, carried out to the access log on the response
/// (routing happens inside the access log's span, so the request cannot carry it out).
#[derive(Clone)]
struct RouteTemplate(String);

/// Route layer: copies the matched route template onto the response.
pub async fn record_route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response
            .extensions_mut()
            .insert(RouteTemplate(matched.as_str().to_owned()));
    }
    response
}

/// Policy of every response that does not bring its own (API JSON, health, errors): nothing
/// may load or frame it. The browser app's page carries `static_files::APP_CSP`.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// HSTS for one year, subdomains included; sent only with `COOKIE_SECURE` (TLS in front).
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Security headers on every response, errors, Socket.IO and refusals by inner layers
/// included: `X-Content-Type-Options: nosniff`, a Content-Security-Policy (`DEFAULT_CSP`
/// unless the handler set one), and with `COOKIE_SECURE` `Strict-Transport-Security`.
pub async fn security_headers(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A 304 updates the headers a browser cached with the full response: it must not swap
    // the app page's policy for the default one.
    if status != StatusCode::NOT_MODIFIED && !headers.contains_key(header::CONTENT_SECURITY_POLICY)
    {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    if app.config.cookie_secure {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The metric label of a request method: one of the standard methods, or `other` for any
/// extension method a client invents (each distinct label is a new time series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Logs one line per request (method, path, status, latency, request id) and records the
/// HTTP metrics by route template.
pub async fn access_log(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(request).await;
    let latency = started.elapsed();
    let route = match response.extensions().get::<RouteTemplate>() {
        Some(RouteTemplate(route)) => route.clone(),
        None if path.starts_with("/socket.io") => "/socket.io".to_owned(),
        None => "unmatched".to_owned(),
    };
    let status = response.status().as_u16();
    let method_label = method_label(&method);
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: method_label.to_owned(),
            route: route.clone(),
            status,
        })
        .inc();
    app.metrics
        .http_duration
        .get_or_create(&RouteLabels {
            method: method_label.to_owned(),
            route,
        })
        .observe(latency.as_secs_f64());
    let latency_ms = (latency.as_secs_f64() * 100_000.0).round() / 100.0;
    if is_chatty(&path) && status < 500 {
        tracing::debug!(method = %method, path = %path, status, latency_ms, request_id = %request_id, "http request");
    } else {
        tracing::info!(method = %method, path = %path, status, latency_ms, request_id = %request_id, "http request");
    }
    response
}

/// Refuses cross-origin state-changing requests and cross-origin Socket.IO handshakes
/// (cross-site WebSocket hijacking) unless the origin is listed in `CORS_ORIGINS`.
///
/// Browsers send `Origin` on every cross-origin request and on same-origin non-GET requests;
/// a request without it is not from a browser page and cannot carry a victim's cookie by
/// accident, so it passes.
pub async fn origin_guard(
    State(app): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let guarded = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) || request.uri().path().starts_with("/socket.io");
    if guarded && !origin_allowed(request.headers(), &app) {
        // Anyone can send these at any rate: one line per refusal at debug, and at most one a
        // minute at info saying how many there were.
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(128)
                    .collect::<String>()
            })
            .unwrap_or_default();
        tracing::debug!(path = %request.uri().path(), origin = %origin, "refused cross-origin request");
        if let Some(refused) = ORIGIN_REFUSALS.hit() {
            tracing::info!(refused, last_origin = %origin, "refused cross-origin requests");
        }
        return ApiError::new(ErrorCode::ForbiddenOrigin, "cross-origin request refused")
            .into_response();
    }
    next.run(request).await
}

/// Throttles the info line about refused cross-origin requests.
static ORIGIN_REFUSALS: Throttled = Throttled::new(Duration::from_secs(60));

fn origin_allowed(headers: &HeaderMap, app: &AppState) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if app
        .config
        .cors_origins
        .iter()
        .any(|allowed| allowed == origin)
    {
        return true;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    // Behind a proxy the Host the browser used arrives as X-Forwarded-Host.
    let forwarded = if app.config.trust_proxy {
        headers
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok())
    } else {
        None
    };
    let host = forwarded.or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// A query parameter of an Engine.IO request (`sid`, `transport`), `None` for other paths.
fn engine_param<'a>(request: &'a Request<Body>, name: &str) -> Option<&'a str> {
    if !request.uri().path().starts_with("/socket.io") {
        return None;
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// While draining, refuses new Engine.IO sessions (requests without a `sid`) with 503, so the
/// client retries and the load balancer sends it to another instance. Requests of existing
/// sessions pass: they are how those clients learn about the drain.
pub async fn refuse_new_sessions_while_draining(
    State(app): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let is_new_session =
        request.uri().path().starts_with("/socket.io") && engine_param(&request, "sid").is_none();
    if is_new_session && app.drain.is_draining() {
        return ApiError::new(
            ErrorCode::Unavailable,
            "this instance is draining; connect again to reach another",
        )
        .with_retry_after(std::time::Duration::from_secs(1))
        .into_response();
    }
    next.run(request).await
}

/// Engine.IO bookkeeping for the drain (see `realtime::broadcast::close_transport`): records
/// the connection of each WebSocket upgrade (a connection that client alone uses), and answers
/// the polls of long-polling sessions the drain is closing with the Engine.IO close packet
/// (`1`), which makes the official client reconnect by itself. Polling connections are never
/// recorded: a proxy may carry other clients' requests on them.
pub async fn track_engine_sessions(
    State(app): State<AppState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let Some(sid) = engine_param(&request, "sid") else {
        return next.run(request).await;
    };
    match engine_param(&request, "transport") {
        Some("websocket") => {
            // Recorded only once Engine.IO has answered the upgrade with `101`: it refuses a
            // malformed sid before that, so a client cannot make this map hold strings of its
            // choosing. (An unknown but well-formed sid is also answered `101` and closed right
            // after; its entry is swept once the connection is gone.)
            let sid = sid.to_owned();
            let connection = request
                .extensions()
                .get::<ConnectInfo<Connection>>()
                .map(|ConnectInfo(connection)| connection.clone());
            let response = next.run(request).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(connection) = connection {
                    app.session_connections.record(&sid, &connection);
                }
            }
            response
        }
        Some("polling")
            if request.method() == Method::GET && app.session_connections.is_closing(sid) =>
        {
            answer_closing_poll(request, next).await
        }
        _ => next.run(request).await,
    }
}

/// How long the poll of a closing long-polling session may wait for the packets still queued
/// for it: Engine.IO answers at once when it has any, and otherwise holds the poll open.
const CLOSING_POLL_FLUSH: Duration = Duration::from_millis(100);

/// Answers a poll of a long-polling session the drain is closing: whatever Engine.IO still
/// has queued for it (the `server:draining` notice when no poll was pending as it was sent,
/// acks of messages posted meanwhile) and, once nothing is queued, the close packet. Without
/// the queued packets a client that was between two polls would lose them. They never share
/// a payload with the close: the official client hands events to the app a tick after the
/// payload is read, so an event next to the close would only surface after the reconnect (too
/// late for the drain notice). The session stays closing, so the client's next poll gets the
/// close. The session's posts still go through: refusing one would fail the client's
/// transport before it has read its notice.
async fn answer_closing_poll(request: Request<Body>, next: Next) -> Response {
    let mut payload = Vec::new();
    // A poll still waiting after the deadline has nothing queued: dropping it frees the
    // session's queue for the next request without losing a packet.
    if let Ok(Some(queued)) = tokio::time::timeout(CLOSING_POLL_FLUSH, async {
        let response = next.run(request).await;
        if response.status() != StatusCode::OK {
            return None;
        }
        response
            .into_body()
            .collect()
            .await
            .ok()
            .map(|body| body.to_bytes())
    })
    .await
    {
        if !queued.is_empty() {
            payload.extend_from_slice(&queued);
        }
    }
    if payload.is_empty() {
        payload.push(b'1');
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        payload,
    )
        .into_response()
}

/// JSON 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// JSON 405 for known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
