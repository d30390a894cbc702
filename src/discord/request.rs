//! How one request goes out: a deadline per attempt, retries of 5xx
//! answers and timeouts with backoff, a client-wide pause after 429s on top
//! of twilight's per-bucket pacing, and turns per channel for routes that
//! share a bucket twilight cannot see.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use omp_discord_core::embed::FileUpload;
use serde::de::DeserializeOwned;
use serde_json::Value;
use twilight_http::request::{Form, Method, Request};
use twilight_http::response::{Response, ResponseFuture};
use twilight_http::routing::Route;
use twilight_http_ratelimiting::Endpoint;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

use super::Discord;
use super::error::{Failure, SendError};
use crate::config::{ApiBase, Token};

/// How a client spends its attempts on one request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Attempts per request (the first plus retries) for 5xx answers, timeouts and 429s.
    attempts: u32,
    /// Deadline of one HTTP attempt (twilight-http enforces it).
    attempt_timeout: Duration,
    /// Deadline of one attempt, its turn in twilight's rate-limit queue included.
    pub(super) queued_deadline: Duration,
}

impl Policy {
    /// The sidecar's: nobody waits on a journaled message, so a request is
    /// retried, and may wait its turn behind a backlog.
    pub(super) const SIDECAR: Self =
        Self { attempts: MAX_ATTEMPTS, attempt_timeout: ATTEMPT_TIMEOUT, queued_deadline: QUEUED_ATTEMPT_DEADLINE };
    /// The CLI's (`setup`, `doctor`): one attempt, because a person is
    /// waiting and setup's posts carry no nonce that would make a retry safe.
    pub(super) const INTERACTIVE: Self =
        Self { attempts: 1, attempt_timeout: Duration::from_secs(10), queued_deadline: Duration::from_secs(15) };
}

/// The sidecar's attempts per request (the first plus retries).
const MAX_ATTEMPTS: u32 = 4;
/// Deadline of one HTTP attempt (twilight-http enforces it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt may also wait for its turn in twilight's rate-limit
/// queue: a backlog of starter posts in one channel (5 per 5 s) takes a while,
/// and giving up earlier would only send the request to the back of the queue.
const RATE_LIMIT_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Deadline of one attempt of a request, its turn in the queue included.
const QUEUED_ATTEMPT_DEADLINE: Duration =
    Duration::from_secs(RATE_LIMIT_QUEUE_WAIT.as_secs() + ATTEMPT_TIMEOUT.as_secs());
/// First retry delay, doubled per retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Pause after a 429 that twilight cannot pace (a global one, or one without
/// rate-limit headers, as Cloudflare sends); doubled per 429 in a row.
const FIRST_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// The longest such pause.
const MAX_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(30);

/// Routes whose path names a message (edit it, start a thread from it, react
/// to it) share one bucket per channel at Discord, but twilight-http learns buckets
/// per path: every new message id would go out unpaced and meet a 429. Such
/// requests take turns per channel here, and each waits until the bucket the
/// previous one reported has room.
#[derive(Debug, Default)]
pub(super) struct SiblingRoutes {
    /// Per `kind:channel`: the last request's endpoint, whose bucket twilight knows.
    last: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<Option<Endpoint>>>>>,
}

/// Our own pause after 429s, on top of twilight's per-bucket pacing: every
/// request of this client waits until `until`.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    until: Option<Instant>,
    /// The pause the next 429 in a row gets.
    next: Duration,
    /// When the last pause began.
    last_pause: Option<Instant>,
    /// 429s answered since start.
    limited: u64,
}

/// How close the sidecar is to Discord's limits, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Headroom {
    /// 429s answered since start (twilight paces by the headers, so these should stay rare).
    pub rate_limited: u64,
    /// How long every request still waits after the last 429s, in ms.
    pub paused_ms: u64,
    /// The home channel's message bucket as last reported by Discord: remaining
    /// of limit; `None` when no post used it within its window (it is full).
    pub home_messages: Option<(u16, u16)>,
    /// When that bucket refills, in ms from now.
    pub home_messages_reset_ms: Option<u64>,
}

impl Discord {
    /// One JSON request to any route through twilight's raw path (its rate
    /// limiter included), with [`Discord::with_retries`]'s deadlines and retry cap.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn send_json<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        route: &Route<'_>,
        body: &Value,
    ) -> Result<T, SendError> {
        self.with_retries(|| {
            let request = Request::builder(route).json(body).build().expect("a JSON value always serializes");
            self.client.request::<T>(request)
        })
        .await
    }

    /// A message body as JSON, or with its files as multipart
    /// (`payload_json` plus `files[n]`), as [`Discord::send_json`].
    pub(super) async fn send_message<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        route: &Route<'_>,
        body: &Value,
        files: &[FileUpload],
    ) -> Result<T, SendError> {
        if files.is_empty() {
            return self.send_json(route, body).await;
        }
        let json = serde_json::to_vec(body).expect("a JSON value always serializes");
        self.with_retries(|| {
            let mut form = Form::new().json_part(b"payload_json", &json);
            for (index, file) in files.iter().enumerate() {
                let name = format!("files[{index}]");
                form = form.file_part(name.as_bytes(), file.filename.as_bytes(), file.content.as_bytes());
            }
            let request = Request::builder(route).form(form).build().expect("a form always builds");
            self.client.request::<T>(request)
        })
        .await
    }

    /// One GET of any route through twilight's raw path, as [`Discord::send_json`].
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn get_json<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        route: &Route<'_>,
    ) -> Result<T, SendError> {
        self.with_retries(|| self.client.request::<T>(Request::from_route(route))).await
    }

    /// Runs one request with a deadline per attempt, retrying (as often as
    /// the client's [`Policy`] allows) 5xx answers and network failures with
    /// backoff, and 429s after our own pause.
    pub(super) async fn with_retries<T, F>(&self, mut attempt: F) -> Result<T, SendError>
    where
        T: DeserializeOwned + Unpin + Send + 'static,
        F: FnMut() -> ResponseFuture<T>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        let attempts = self.policy.attempts;
        for n in 1..=attempts {
            match self.attempt(attempt(), self.policy.queued_deadline).await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::RateLimited) => {
                    let pause = self.rate_limited();
                    last = format!("rate limited (HTTP 429); every request pauses {} ms", pause.as_millis());
                    tracing::warn!(attempt = n, reason = %last, "discord request failed, will retry");
                    continue;
                }
                Err(Failure::Retry(reason)) => last = reason,
            }
            tracing::warn!(attempt = n, reason = %last, "discord request failed, will retry");
            if n < attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(SendError::Unavailable { attempts, last })
    }

    /// One attempt of `request` once the pause after recent 429s is over,
    /// within `deadline` (its wait in twilight's queue included), with
    /// twilight's own retry of a 429 cancelled.
    pub(super) async fn attempt<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        request: ResponseFuture<T>,
        deadline: Duration,
    ) -> Result<T, Failure> {
        self.paced().await;
        tokio::time::timeout(deadline, model(first_attempt_only(request)))
            .await
            .unwrap_or_else(|_| Err(Failure::Retry("the request timed out".to_owned())))
    }

    /// Takes this channel's turn for a sibling route (see [`SiblingRoutes`]),
    /// then waits until the bucket the previous request reported has room.
    /// The caller records its own path in the guard once answered.
    pub(super) async fn sibling_turn(&self, key: String) -> tokio::sync::OwnedMutexGuard<Option<Endpoint>> {
        let slot = self.siblings.last.lock().expect("siblings lock").entry(key).or_default().clone();
        let turn = slot.lock_owned().await;
        if let (Some(endpoint), Some(limiter)) = (turn.as_ref(), self.client.ratelimiter())
            && let Some(bucket) = limiter.bucket(endpoint.clone()).await.filter(|b| b.remaining == 0)
        {
            tokio::time::sleep_until(bucket.reset_at.into()).await;
        }
        turn
    }

    /// Waits out the pause after recent 429s.
    async fn paced(&self) {
        let until = self.pacing.lock().expect("pacing lock").until;
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Records a 429 and starts the pause every request waits out, doubled when
    /// a 429 answers the first requests after the previous pause (the storm goes on).
    pub(super) fn rate_limited(&self) -> Duration {
        let mut pacing = self.pacing.lock().expect("pacing lock");
        pacing.limited += 1;
        let now = Instant::now();
        if let Some(until) = pacing.until.filter(|u| *u > now) {
            // Sent before the pause began (several destinations meet the same
            // storm at once): the pause already covers it; doubling here would
            // stretch it to its cap after one round.
            return until - now;
        }
        // In a row: the first requests after the last pause met a 429 again.
        // (Not reset by a success in between: a route the storm spares, a
        // GET, says nothing about the one that keeps being refused.)
        let calm_since = pacing.last_pause.is_none_or(|began| now - began > pacing.next * 2);
        let pause = if calm_since { FIRST_RATE_LIMIT_PAUSE } else { pacing.next.max(FIRST_RATE_LIMIT_PAUSE) };
        pacing.next = (pause * 2).min(MAX_RATE_LIMIT_PAUSE);
        pacing.until = Some(now + pause);
        pacing.last_pause = Some(now);
        pause
    }

    /// How close to Discord's limits the sidecar runs (`home`: the home channel, if any).
    pub async fn headroom(&self, home: Option<Id<ChannelMarker>>) -> Headroom {
        let (rate_limited, paused_ms) = {
            let pacing = self.pacing.lock().expect("pacing lock");
            let left = pacing.until.map(|u| u.saturating_duration_since(Instant::now())).unwrap_or_default();
            (pacing.limited, u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        };
        let bucket = match (self.client.ratelimiter(), home) {
            (Some(limiter), Some(home)) => {
                let path = format!("channels/{home}/messages");
                limiter.bucket(Endpoint { method: Method::Post, path }).await
            }
            _ => None,
        };
        Headroom {
            rate_limited,
            paused_ms,
            home_messages: bucket.map(|b| (b.remaining, b.limit)),
            home_messages_reset_ms: bucket.map(|b| {
                u64::try_from(b.reset_at.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }
}

/// Lets twilight send a request once: it retries a 429 by itself, at once
/// when the 429 is global or carries no rate-limit headers, which would
/// hammer Discord. Its retry is cancelled instead (`RequestCanceled`), and
/// [`Discord::with_retries`] pauses before trying again.
fn first_attempt_only<T>(mut future: ResponseFuture<T>) -> ResponseFuture<T> {
    let sent = Arc::new(AtomicBool::new(false));
    future.set_pre_flight(move || !sent.swap(true, Ordering::SeqCst));
    future
}

/// A twilight client for `token` (none: webhook routes carry their own),
/// pointed at `api`.
pub(super) fn client(token: Option<&Token>, api: &ApiBase, policy: Policy) -> twilight_http::Client {
    let mut builder = twilight_http::Client::builder()
        .timeout(policy.attempt_timeout)
        // A 401 is reported and the token can be fixed without a restart.
        .remember_invalid_token(false);
    if let Some(token) = token {
        builder = builder.token(token.expose().to_owned());
    }
    if let Some(proxy) = &api.proxy {
        builder = builder.proxy(proxy.clone(), api.plain_http);
    }
    builder.build()
}

/// A request that must not be repeated (a reaction, an interaction's one
/// answer): one attempt with a deadline, its failure in our terms.
pub(super) async fn once<T>(
    response: impl Future<Output = Result<Response<T>, twilight_http::Error>>,
) -> Result<(), SendError> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, response).await {
        Err(_) => Err(SendError::Unavailable { attempts: 1, last: "the request timed out".into() }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => match Failure::from(err) {
            Failure::Fatal(err) => Err(err),
            Failure::Retry(last) => Err(SendError::Unavailable { attempts: 1, last }),
            Failure::RateLimited => Err(SendError::Unavailable { attempts: 1, last: "rate limited (HTTP 429)".into() }),
        },
    }
}

/// The answer's body as `T`.
async fn model<T: DeserializeOwned + Unpin + Send + 'static>(
    response: impl Future<Output = Result<Response<T>, twilight_http::Error>>,
) -> Result<T, Failure> {
    let response = response.await?;
    response.model().await.map_err(|_| Failure::Retry("Discord's answer could not be read".to_owned()))
}
