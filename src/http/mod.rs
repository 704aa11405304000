//! The HTTP surface: router, middleware stack, error funnel, extractors, one module per resource.
//!
//! Layer order, outermost first, and why:
//! 1. `X-Instance-Id` on every response, including ones produced by inner layers (413, 403,
//!    Socket.IO polling and the WebSocket 101), and the security headers
//!    (`middleware::security_headers`) on all of them as well;
//! 2. request id: taken from `X-Request-Id` or generated, and echoed back;
//! 3. access log and HTTP metrics;
//! 4. CORS for the configured origins, then the origin guard;
//! 5. Socket.IO, which answers `/socket.io/` before routing;
//! 6. the router, with sessions only on `/api` (health probes and assets never touch the store).

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod bearer;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod rooms;
pub mod static_files;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post};
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::realtime::broadcast::Realtime;
use crate::session;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const INSTANCE_ID: HeaderName = HeaderName::from_static("x-instance-id");

/// State of HTTP handlers: the shared state plus the realtime handle.
#[derive(Clone)]
pub struct HttpState {
    /// Shared state.
    pub app: AppState,
    /// Cross-instance room operations.
    pub realtime: Realtime,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

impl FromRef<HttpState> for Realtime {
    fn from_ref(state: &HttpState) -> Self {
        state.realtime.clone()
    }
}

/// Builds the complete HTTP service for `state`, with Socket.IO mounted by `socketio`.
pub fn router<A: Adapter>(state: HttpState, socketio: SocketIoLayer<A>) -> Router {
    let app = &state.app;
    let sessions = session::layer(app.sessions.clone(), app.cookie_key.clone(), &app.config);

    let api = Router::new()
        .route("/api/auth/register", post(auth::register))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/analytics/opt-out", post(analytics::opt_out))
        .route("/api/analytics/opt-in", post(analytics::opt_in))
        .route("/api/analytics/status", get(analytics::status))
        .route("/api/analytics/events", post(analytics::event))
        .route("/api/rooms", get(rooms::list))
        .route("/api/rooms/{room}/messages", get(rooms::messages))
        .route("/api/admin/emit", post(admin::emit))
        .route("/api/admin/instances", get(admin::instances))
        .route("/api/admin/overview", get(admin::overview))
        .route(
            "/api/admin/instances/{id}/drain",
            post(admin::drain_instance),
        )
        .route(
            "/api/admin/users/{id}/disconnect",
            post(admin::disconnect_user),
        )
        .layer(sessions);

    let open = Router::new()
        .route("/", get(static_files::index))
        .route("/admin", get(static_files::operator))
        .route("/assets/{name}", get(static_files::asset))
        .route("/health", get(health::overview))
        .route("/health/live", get(health::live))
        .route("/healthz", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics));

    let instance_id = HeaderValue::from_str(app.config.instance_id.as_str())
        .unwrap_or(HeaderValue::from_static("invalid"));
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(app.config.cors_origins.clone()))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([INSTANCE_ID, REQUEST_ID]);

    let routes = api
        .merge(open)
        .route_layer(axum::middleware::from_fn(middleware::record_route))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.http_body_limit))
        .with_state(state.clone());

    // The outer stack wraps the whole router as one service, so each layer runs exactly once
    // per request, Socket.IO included.
    Router::new().fallback_service(routes).layer(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(INSTANCE_ID, instance_id))
            .layer(axum::middleware::from_fn_with_state(
                state.app.clone(),
                middleware::security_headers,
            ))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn_with_state(
                state.app.clone(),
                middleware::access_log,
            ))
            .layer(cors)
            .layer(axum::middleware::from_fn_with_state(
                state.app.clone(),
                middleware::origin_guard,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.app.clone(),
                middleware::refuse_new_sessions_while_draining,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.app.clone(),
                middleware::track_engine_sessions,
            ))
            .layer(socketio),
    )
}
