//! Discord's REST rate limits: per-route buckets keyed by the major parameter, the global
//! limit, and the invalid request counter that bans clients.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::snowflake::now_ms;

/// Requests per second a bot may make across all routes.
pub(crate) const GLOBAL_LIMIT: u32 = 50;
/// The window of the invalid request counter.
pub(crate) const INVALID_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a client that hit the invalid request limit is banned.
pub(crate) const BAN_DURATION: Duration = Duration::from_secs(10 * 60);

/// The limit of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteLimit {
    /// Requests per window.
    pub(crate) limit: u32,
    /// Window length.
    pub(crate) window: Duration,
    /// Whether the route counts against the global limit.
    pub(crate) global: bool,
}

/// The limit for a route template (as axum matched it, without `/api/v10`).
pub(crate) fn route_limit(method: &Method, template: &str) -> RouteLimit {
    let limit = |limit, millis| RouteLimit { limit, window: Duration::from_millis(millis), global: true };
    let unauthenticated =
        template.starts_with("/webhooks/{webhook_id}/{token}") || template.starts_with("/interactions/");
    let mut route = match (method.as_str(), template) {
        ("POST", "/channels/{channel_id}/messages") => limit(5, 5_000),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}") => limit(5, 5_000),
        ("DELETE", "/channels/{channel_id}/messages/{message_id}") => limit(5, 1_000),
        (_, t) if t.contains("/reactions/") => limit(1, 250),
        ("POST", "/channels/{channel_id}/typing") => limit(5, 5_000),
        (_, t) if t.starts_with("/webhooks/{webhook_id}/{token}") => limit(5, 5_000),
        ("POST", "/channels/{channel_id}/threads")
        | ("POST", "/channels/{channel_id}/messages/{message_id}/threads") => limit(10, 10_000),
        _ => limit(50, 1_000),
    };
    // Webhook executions and interaction callbacks do not use the bot token's global limit.
    route.global = !unauthenticated;
    route
}

/// Discord's opaque bucket id: a stable hash of the route.
pub(crate) fn bucket_hash(method: &Method, template: &str) -> String {
    let fnv = |seed: u64| {
        let mut hash = seed;
        for byte in method.as_str().bytes().chain(template.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        hash
    };
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4))
}

#[derive(Debug)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

/// All rate limit state.
#[derive(Debug)]
pub(crate) struct RateLimits {
    buckets: HashMap<(String, String), Bucket>,
    global_started: Option<Instant>,
    global_count: u32,
    invalid: VecDeque<Instant>,
    invalid_limit: u32,
    banned_until: Option<Instant>,
}

fn seconds(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("rate limit header values are ASCII")
}

/// The 429 error Discord sends.
pub(crate) fn too_many_requests(retry_after: f64, global: bool, scope: Option<&str>) -> ApiError {
    let mut error = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: json!({
            "message": "You are being rate limited.",
            "retry_after": (retry_after * 1000.0).ceil() / 1000.0,
            "global": global,
        }),
        headers: Box::default(),
    }
    .with_header("retry-after", format!("{}", retry_after.ceil().max(1.0) as u64))
    .with_header("via", "1.1 google".to_owned());
    if global {
        error = error
            .with_header("x-ratelimit-global", "true".to_owned())
            .with_header("x-ratelimit-scope", "global".to_owned());
    } else if let Some(scope) = scope {
        error = error.with_header("x-ratelimit-scope", scope.to_owned());
    }
    error
}

/// An injected 429 with the headers Discord sends for its `scope`: a route's bucket
/// running out (`user`: remaining 0 and the reset), a shared resource (`shared`), a global
/// limit, or none at all (`none`). The route's bucket and limit are added by [`route_headers`].
pub(crate) fn injected_429(retry_after: f64, global: bool, scope: &str) -> ApiError {
    if global || scope == "none" {
        return too_many_requests(retry_after, global, None);
    }
    let mut error = too_many_requests(retry_after, false, Some(scope));
    let reset_after = Duration::from_secs_f64(retry_after.max(0.0));
    if scope == "user" {
        error.headers.insert("x-ratelimit-remaining", header("0"));
        error.headers.insert("x-ratelimit-reset-after", header(&seconds(reset_after)));
        error.headers.insert("x-ratelimit-reset", header(&seconds(Duration::from_millis(now_ms()) + reset_after)));
    }
    error
}

/// The bucket and limit headers of a route, for an injected 429 that has a bucket
/// (Discord names the route's own bucket in a 429).
pub(crate) fn route_headers(error: &mut ApiError, method: &Method, template: &str) {
    if error.headers.contains_key("x-ratelimit-scope") && !error.headers.contains_key("x-ratelimit-global") {
        error.headers.insert("x-ratelimit-bucket", header(&bucket_hash(method, template)));
        error.headers.insert("x-ratelimit-limit", header(&route_limit(method, template).limit.to_string()));
    }
}

impl RateLimits {
    pub(crate) fn new(invalid_limit: u32) -> Self {
        Self {
            buckets: HashMap::new(),
            global_started: None,
            global_count: 0,
            invalid: VecDeque::new(),
            invalid_limit,
            banned_until: None,
        }
    }

    /// Takes one request from the route's bucket (and the global limit). Returns the
    /// headers to send, or the 429. With `enforce` false, requests always pass.
    pub(crate) fn acquire(
        &mut self,
        now: Instant,
        method: &Method,
        template: &str,
        major: &str,
        enforce: bool,
    ) -> Result<HeaderMap, ApiError> {
        let route = route_limit(method, template);
        if route.global && enforce {
            let started = *self.global_started.get_or_insert(now);
            if now.duration_since(started) >= Duration::from_secs(1) {
                self.global_started = Some(now);
                self.global_count = 0;
            }
            if self.global_count >= GLOBAL_LIMIT {
                let retry = Duration::from_secs(1).saturating_sub(now.duration_since(started));
                return Err(too_many_requests(retry.as_secs_f64(), true, None));
            }
        }
        let hash = bucket_hash(method, template);
        let bucket = self
            .buckets
            .entry((hash.clone(), major.to_owned()))
            .or_insert(Bucket { remaining: route.limit, reset_at: now + route.window });
        if now >= bucket.reset_at {
            bucket.remaining = route.limit;
            bucket.reset_at = now + route.window;
        }
        let reset_after = bucket.reset_at.duration_since(now);
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit", header(&route.limit.to_string()));
        headers.insert("x-ratelimit-bucket", header(&hash));
        headers.insert("x-ratelimit-reset-after", header(&seconds(reset_after)));
        let reset_unix = Duration::from_millis(now_ms()) + reset_after;
        headers.insert("x-ratelimit-reset", header(&seconds(reset_unix)));
        // Discord's reference documents the scope on 429s only, but it answers every rate-limited
        // request with it, and stock clients need it there: twilight-http 0.18 reads a response's
        // bucket headers only when `x-ratelimit-scope: user` is among them, and paces by nothing else.
        headers.insert("x-ratelimit-scope", header("user"));
        if bucket.remaining == 0 && enforce {
            headers.insert("x-ratelimit-remaining", header("0"));
            let mut error = too_many_requests(reset_after.as_secs_f64(), false, Some("user"));
            error.headers.extend(headers);
            return Err(error);
        }
        bucket.remaining = bucket.remaining.saturating_sub(1);
        headers.insert("x-ratelimit-remaining", header(&bucket.remaining.to_string()));
        if route.global && enforce {
            self.global_count += 1;
        }
        Ok(headers)
    }

    /// Counts a 401, 403 or 429 (not `shared`) response towards the invalid request limit.
    pub(crate) fn record_status(&mut self, now: Instant, status: StatusCode, scope: Option<&str>) {
        let invalid = matches!(status.as_u16(), 401 | 403)
            || (status == StatusCode::TOO_MANY_REQUESTS && scope != Some("shared"));
        if !invalid {
            return;
        }
        self.invalid.push_back(now);
        while self.invalid.front().is_some_and(|at| now.duration_since(*at) >= INVALID_WINDOW) {
            self.invalid.pop_front();
        }
        if self.invalid.len() >= self.invalid_limit as usize {
            self.banned_until = Some(now + BAN_DURATION);
        }
    }

    /// Whether the client is banned for too many invalid requests.
    pub(crate) fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| now < until)
    }

    /// How many invalid requests fell in the last 10 minutes.
    pub(crate) fn invalid_count(&self, now: Instant) -> usize {
        self.invalid.iter().filter(|at| now.duration_since(**at) < INVALID_WINDOW).count()
    }
}

/// The 403 a banned client gets (Discord's Cloudflare ban).
pub(crate) fn banned_error() -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        body: json!({
            "message": "You are being blocked from accessing our API temporarily due to exceeding our rate limits frequently. Please read our docs at https://discord.com/developers/docs/topics/rate-limits to prevent this moving forward.",
            "code": 40333,
        }),
        headers: Box::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = "/channels/{channel_id}/messages";

    #[tokio::test(start_paused = true)]
    async fn five_messages_per_five_seconds_per_channel() {
        let mut limits = RateLimits::new(10_000);
        let post = Method::POST;
        for i in 0..5 {
            let headers = limits.acquire(Instant::now(), &post, CREATE, "1", true).unwrap();
            assert_eq!(headers["x-ratelimit-remaining"], (4 - i).to_string());
            assert_eq!(headers["x-ratelimit-limit"], "5");
        }
        let err = limits.acquire(Instant::now(), &post, CREATE, "1", true).unwrap_err();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.body["global"], false);
        assert_eq!(err.headers["x-ratelimit-scope"], "user");
        assert_eq!(err.headers["via"], "1.1 google");
        // Another channel has its own bucket.
        assert!(limits.acquire(Instant::now(), &post, CREATE, "2", true).is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(limits.acquire(Instant::now(), &post, CREATE, "1", true).is_ok());
        // Not enforcing: headers only.
        for _ in 0..10 {
            assert!(limits.acquire(Instant::now(), &post, CREATE, "3", false).is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn global_limit_is_fifty_per_second() {
        let mut limits = RateLimits::new(10_000);
        for i in 0..GLOBAL_LIMIT {
            limits.acquire(Instant::now(), &Method::GET, "/channels/{channel_id}", &i.to_string(), true).unwrap();
        }
        let err = limits.acquire(Instant::now(), &Method::GET, "/channels/{channel_id}", "x", true).unwrap_err();
        assert_eq!(err.body["global"], true);
        assert_eq!(err.headers["x-ratelimit-global"], "true");
        // Webhook executions are not part of the bot's global limit.
        assert!(limits.acquire(Instant::now(), &Method::POST, "/webhooks/{webhook_id}/{token}", "9", true).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.acquire(Instant::now(), &Method::GET, "/channels/{channel_id}", "x", true).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_requests_ban_and_expire() {
        let mut limits = RateLimits::new(3);
        let now = Instant::now();
        limits.record_status(now, StatusCode::NOT_FOUND, None);
        limits.record_status(now, StatusCode::TOO_MANY_REQUESTS, Some("shared"));
        limits.record_status(now, StatusCode::UNAUTHORIZED, None);
        limits.record_status(now, StatusCode::FORBIDDEN, None);
        assert!(!limits.banned(now));
        limits.record_status(now, StatusCode::TOO_MANY_REQUESTS, Some("user"));
        assert!(limits.banned(now));
        assert!(!limits.banned(now + BAN_DURATION));
    }
}
