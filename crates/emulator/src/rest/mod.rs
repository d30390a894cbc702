//! REST v10: the router, authentication, rate limits and fault injection around it, and the
//! request body extractors. One module per Discord resource.

mod channels;
mod commands;
mod guilds;
mod interactions;
mod threads;
mod users;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::fault::{Injected, Unanswered};
use crate::record::RecordedBody;
use crate::state::{EmulatorState, lock};

/// Where the REST API lives.
pub(crate) const API_PREFIX: &str = "/api/v10";

/// The REST router, to be nested at [`API_PREFIX`].
pub(crate) fn router(state: EmulatorState) -> Router<EmulatorState> {
    Router::new()
        .route("/gateway", get(users::gateway))
        .route("/gateway/bot", get(users::gateway_bot))
        .route("/users/@me", get(users::me))
        .route("/users/@me/guilds", get(users::my_guilds))
        .route("/users/@me/channels", post(users::create_dm))
        .route("/users/{user_id}", get(users::user))
        .route("/oauth2/applications/@me", get(users::application))
        .route("/applications/@me", get(users::application))
        .route("/guilds/{guild_id}", get(guilds::guild))
        .route("/guilds/{guild_id}/channels", get(guilds::channels).post(guilds::create_channel))
        .route("/guilds/{guild_id}/roles", get(guilds::roles))
        .route("/guilds/{guild_id}/members", get(guilds::members))
        .route("/guilds/{guild_id}/members/{user_id}", get(guilds::member))
        .route("/guilds/{guild_id}/threads/active", get(guilds::active_threads))
        .route("/channels/{channel_id}", get(channels::channel).patch(threads::modify_channel))
        .route("/channels/{channel_id}/messages", get(channels::list_messages).post(channels::create_message))
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            get(channels::message).patch(channels::edit_message).delete(channels::delete_message),
        )
        .route("/channels/{channel_id}/typing", post(channels::typing))
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
            get(channels::reaction_users).delete(channels::delete_all_reactions_for),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            put(channels::add_reaction).delete(channels::delete_own_reaction),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
            axum::routing::delete(channels::delete_user_reaction),
        )
        .route("/channels/{channel_id}/threads", post(threads::start_without_message))
        .route("/channels/{channel_id}/messages/{message_id}/threads", post(threads::start_from_message))
        .route("/channels/{channel_id}/thread-members", get(threads::list_members))
        .route("/channels/{channel_id}/thread-members/@me", put(threads::join).delete(threads::leave))
        .route(
            "/channels/{channel_id}/thread-members/{user_id}",
            get(threads::get_member).put(threads::add_member).delete(threads::remove_member),
        )
        .route("/channels/{channel_id}/threads/archived/public", get(threads::archived_public))
        .route("/channels/{channel_id}/webhooks", get(webhooks::channel_webhooks).post(webhooks::create))
        .route("/webhooks/{webhook_id}", get(webhooks::get).delete(webhooks::delete))
        .route("/webhooks/{webhook_id}/{token}", get(webhooks::get_with_token).post(webhooks::execute))
        .route(
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            get(webhooks::get_message).patch(webhooks::edit_message).delete(webhooks::delete_message),
        )
        .route(
            "/applications/{application_id}/commands",
            get(commands::list_global).put(commands::overwrite_global).post(commands::create_global),
        )
        .route(
            "/applications/{application_id}/commands/{command_id}",
            get(commands::get_global).patch(commands::edit_global).delete(commands::delete_global),
        )
        .route(
            "/applications/{application_id}/guilds/{guild_id}/commands",
            get(commands::list_guild).put(commands::overwrite_guild).post(commands::create_guild),
        )
        .route(
            "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
            get(commands::get_guild).patch(commands::edit_guild).delete(commands::delete_guild),
        )
        .route("/interactions/{interaction_id}/{token}/callback", post(interactions::callback))
        // Applied innermost first: the rate limiter sees only authorized requests, and
        // injected faults come before both.
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route_layer(middleware::from_fn_with_state(state, inject_faults))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
}

/// The route template without the API prefix, e.g. `/channels/{channel_id}/messages`.
fn template(request: &Request) -> String {
    let matched = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    matched.strip_prefix(API_PREFIX).unwrap_or(matched).to_owned()
}

/// Routes that authenticate with a token in the path instead of the bot token.
fn token_in_path(template: &str) -> bool {
    template.starts_with("/webhooks/{webhook_id}/{token}") || template.starts_with("/interactions/")
}

async fn inject_faults(State(state): State<EmulatorState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let api_path = path.strip_prefix(API_PREFIX).unwrap_or(path).to_owned();
    let (fault, latency) = {
        let mut faults = lock(&state.inner.faults);
        (faults.take(request.method().as_str(), &api_path), faults.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Injected::Error(mut error)) => {
            crate::ratelimit::route_headers(&mut error, request.method(), &template(&request));
            error.into_response()
        }
        Some(Injected::Malformed) => {
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            // Half of the real body (at least one byte of it, and never valid JSON).
            let cut = if bytes.len() > 1 { bytes.slice(..bytes.len() / 2) } else { Bytes::from_static(b"{") };
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(cut))
        }
        Some(Injected::Drop) => {
            let mut response = next.run(request).await;
            response.extensions_mut().insert(Unanswered { hang: Duration::ZERO });
            response
        }
        Some(Injected::Stall(hang)) => {
            let mut response = StatusCode::GATEWAY_TIMEOUT.into_response();
            response.extensions_mut().insert(Unanswered { hang });
            response
        }
        None => next.run(request).await,
    }
}

async fn authorize(State(state): State<EmulatorState>, request: Request, next: Next) -> Response {
    if token_in_path(&template(&request)) {
        return next.run(request).await;
    }
    let expected = format!("Bot {}", state.inner.config.token);
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let revoked = lock(&state.inner.faults).token_revoked;
    if revoked || presented != Some(expected.as_str()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

async fn rate_limit(
    State(state): State<EmulatorState>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let template = template(&request);
    // The major parameter: a channel, guild, webhook (with its token) or interaction id.
    let major: Vec<&str> = params
        .iter()
        .filter(|(name, _)| matches!(*name, "channel_id" | "guild_id" | "webhook_id" | "token" | "interaction_id"))
        .map(|(_, value)| value)
        .collect();
    let major = major.join("/");
    let verdict = lock(&state.inner.limits).acquire(
        Instant::now(),
        request.method(),
        &template,
        &major,
        state.inner.config.rate_limits,
    );
    match verdict {
        Ok(headers) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(headers);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Outermost API middleware: the ban for too many invalid requests, and counting them.
pub(crate) async fn guard(State(state): State<EmulatorState>, request: Request, next: Next) -> Response {
    if lock(&state.inner.limits).banned(Instant::now()) {
        return crate::ratelimit::banned_error().into_response();
    }
    let response = next.run(request).await;
    let scope = response.headers().get("x-ratelimit-scope").and_then(|v| v.to_str().ok());
    lock(&state.inner.limits).record_status(Instant::now(), response.status(), scope);
    response
}

/// A JSON request body (`null` when empty); invalid JSON is Discord's 50109.
pub(crate) struct JsonBody(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|_| ApiError::payload_too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Null));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(|_| ApiError::invalid_json())
    }
}

/// An uploaded file from a multipart body.
pub(crate) struct Upload {
    pub(crate) index: usize,
    pub(crate) filename: String,
    pub(crate) content_type: Option<String>,
    pub(crate) size: usize,
    /// The file's bytes (kept, and served at the attachment's URL).
    pub(crate) data: Bytes,
}

/// A message body: JSON, or multipart with `payload_json` and `files[n]`.
pub(crate) struct MessageBody {
    pub(crate) json: Value,
    pub(crate) files: Vec<Upload>,
    /// What the recorder should show for a multipart body.
    pub(crate) recorded: Option<RecordedBody>,
}

/// Discord's upload limit for a guild without boosts (all files of a request together).
pub(crate) const UPLOAD_MAX: usize = 10 * 1024 * 1024;
/// Files one message can carry.
pub(crate) const FILES_MAX: usize = 10;

impl<S: Send + Sync> FromRequest<S> for MessageBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let JsonBody(json) = JsonBody::from_request(request, state).await?;
            return Ok(Self { json, files: Vec::new(), recorded: None });
        }
        let mut form =
            axum::extract::Multipart::from_request(request, state).await.map_err(|_| ApiError::invalid_json())?;
        let mut json = Value::Null;
        let mut files = Vec::new();
        let mut recorded_files = Vec::new();
        while let Some(field) = form.next_field().await.map_err(|_| ApiError::invalid_json())? {
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let data = field.bytes().await.map_err(|_| ApiError::payload_too_large())?;
            if name == "payload_json" {
                json = serde_json::from_slice(&data).map_err(|_| ApiError::invalid_json())?;
            } else if let Some(index) =
                name.strip_prefix("files[").and_then(|rest| rest.strip_suffix(']')).and_then(|i| i.parse().ok())
            {
                if data.len() > UPLOAD_MAX {
                    return Err(ApiError::payload_too_large());
                }
                if filename.as_deref().is_none_or(|f| f.trim().is_empty()) {
                    let mut errors = crate::error::FormErrors::default();
                    errors.required(&["attachments", &files.len().to_string(), "filename"]);
                    errors.into_result()?;
                }
                recorded_files.push(json!({
                    "field": name,
                    "filename": filename,
                    "content_type": content_type,
                    "size": data.len(),
                }));
                files.push(Upload {
                    index,
                    filename: filename.unwrap_or_else(|| format!("file{index}")),
                    content_type,
                    size: data.len(),
                    data,
                });
            }
        }
        if files.iter().map(|f| f.size).sum::<usize>() > UPLOAD_MAX {
            return Err(ApiError::payload_too_large());
        }
        if files.len() > FILES_MAX {
            let mut errors = crate::error::FormErrors::default();
            errors.too_long(&["attachments"], FILES_MAX);
            errors.into_result()?;
        }
        let recorded = RecordedBody(json!({"payload_json": json, "files": recorded_files}));
        Ok(Self { json, files, recorded: Some(recorded) })
    }
}

/// A JSON response that also carries the multipart body for the recorder.
pub(crate) fn respond(json: Value, recorded: Option<RecordedBody>) -> Response {
    let mut response = axum::Json(json).into_response();
    if let Some(recorded) = recorded {
        response.extensions_mut().insert(recorded);
    }
    response
}

/// Parses a snowflake path or body value; an unparsable id is an unknown object.
pub(crate) fn snowflake(text: &str) -> Option<u64> {
    text.parse().ok()
}

/// The `Host` the client used, for URLs pointing back at the emulator.
pub(crate) fn host(state: &EmulatorState, headers: &HeaderMap) -> String {
    state
        .public_host()
        .unwrap_or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_owned())
}

/// 204 No Content.
pub(crate) fn no_content() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}
