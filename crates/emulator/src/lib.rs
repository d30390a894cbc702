#![doc = include_str!("../README.md")]

mod config;
mod control;
mod error;
mod fault;
mod gateway;
mod interaction;
mod model;
mod ratelimit;
mod record;
mod rest;
mod snowflake;
mod state;
mod validate;
mod web;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    ConfigError, DEFAULT_APPLICATION_ID, DEFAULT_BOT_ROLE_ID, DEFAULT_BOT_TOKEN, DEFAULT_BOT_USER_ID,
    DEFAULT_CATEGORY_ID, DEFAULT_FORUM_CHANNEL_ID, DEFAULT_GENERAL_CHANNEL_ID, DEFAULT_GUEST_USER_ID, DEFAULT_GUILD_ID,
    DEFAULT_HIDDEN_CHANNEL_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_MAINTAINER_ROLE_ID, DEFAULT_OWNER_USER_ID,
    DEFAULT_READ_ONLY_CHANNEL_ID, EmulatorConfig, REQUIRE_TAG, Seed, SeedApplication, SeedChannel, SeedGuild,
    SeedMember, SeedOverwrite, SeedRole, SeedTag, SeedUser, permissions,
};
pub use record::RecordedRequest;
pub use state::EmulatorState;

/// The emulator's router: REST under `/api/v10`, the gateway and the web view at `/`, the
/// control API under `/_emulator/`. Use it with `tower::ServiceExt::oneshot` in tests.
pub fn app(state: EmulatorState) -> Router {
    let api = rest::router(state.clone())
        .layer(middleware::from_fn_with_state(state.clone(), rest::guard))
        .layer(middleware::from_fn_with_state(state.clone(), record::record));
    Router::new()
        .nest(rest::API_PREFIX, api)
        .nest("/_emulator", control::router())
        .route("/", get(root))
        .route("/attachments/{channel_id}/{attachment_id}/{filename}", get(attachment))
        .with_state(state)
}

/// An uploaded file, where its attachment's `url` points.
async fn attachment(
    State(state): State<EmulatorState>,
    axum::extract::Path((_, attachment_id, _)): axum::extract::Path<(String, u64, String)>,
) -> Response {
    match state.attachment(attachment_id) {
        Some(data) => ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct GatewayQuery {
    compress: Option<String>,
    encoding: Option<String>,
}

/// `/` is both the gateway (a WebSocket upgrade) and the web view (a plain GET).
async fn root(State(state): State<EmulatorState>, Query(query): Query<GatewayQuery>, request: Request) -> Response {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return web::page().await.into_response();
    }
    let host = state.public_host().unwrap_or_else(|| {
        request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned()
    });
    let (mut parts, _) = request.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let etf = query.encoding.as_deref() == Some("etf");
    ws.on_upgrade(move |socket| async move {
        if etf {
            // Only JSON is emulated.
            let mut socket = socket;
            let _ = socket
                .send(axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 4002,
                    reason: "Only encoding=json is emulated".into(),
                })))
                .await;
            return;
        }
        gateway::run(socket, state, query.compress, host).await;
    })
}

/// Serves the emulator on `listener` until `shutdown` completes.
///
/// # Errors
///
/// Returns the listener's I/O error if serving fails.
pub async fn serve(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state(listener, EmulatorState::new(config), shutdown).await
}

async fn serve_state(
    listener: TcpListener,
    state: EmulatorState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    // On a wildcard address the Host header of each request says how clients reach us.
    if !addr.ip().is_unspecified() {
        *state::lock(&state.inner.public_host) = Some(addr.to_string());
    }
    tracing::info!(%addr, "emulator listening");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// An emulator running in this process on `127.0.0.1` and an ephemeral port.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    state: EmulatorState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves `config` in a background task.
    ///
    /// # Errors
    ///
    /// Returns the error if the port cannot be bound.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = EmulatorState::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_state(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Emulator { addr, state, stop: Some(stop), task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`; REST is at `/api/v10/…` below it.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT`, for twilight-gateway's `proxy_url` (no trailing slash).
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every REST request so far (as `GET /_emulator/requests`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// The shared state, to inspect channels and messages or inject messages.
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// Stops serving and waits for the server task. Open gateway connections are closed.
    pub async fn shutdown(mut self) {
        // Stop accepting first, so a client that reconnects right away finds the port closed;
        // then close the open gateway connections, which graceful shutdown would wait for.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.state.inner.gateway_faults.send(fault::GatewayFault::Close { code: 1001 });
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await.is_err() {
            tracing::warn!("emulator connections outlived the shutdown grace period");
            self.task.abort();
        }
    }
}

/// How long [`Emulator::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Emulator {
    fn drop(&mut self) {
        // Dropped without `shutdown`: stop serving anyway.
        self.task.abort();
    }
}
