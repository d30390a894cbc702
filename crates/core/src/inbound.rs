//! Messages people write in a session's Discord thread, checked and shaped
//! before they reach OMP as a user message: what a reply asks for (a
//! follow-up, a steer, a stop) and whether its author is over their rate.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Longest inbound message passed to OMP, in characters (Discord allows 4000 for Nitro users).
pub const MAX_INBOUND_CHARS: usize = 4000;

/// Why an inbound message was not passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundRefusal {
    /// Nothing left after cleaning (e.g. only an attachment or whitespace).
    #[error("the message has no text")]
    Empty,
    /// Longer than [`MAX_INBOUND_CHARS`].
    #[error("the message is {chars} characters long, but the max is {max}")]
    TooLong {
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
}

/// The text OMP receives for a Discord reply: control characters removed
/// (newlines and tabs kept), attributed to its author so the model knows
/// where it came from.
///
/// # Errors
///
/// [`InboundRefusal`] when the message is empty or too long.
pub fn prepare_inbound(author: &str, content: &str) -> Result<String, InboundRefusal> {
    let cleaned: String =
        content.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect::<String>().trim().to_owned();
    if cleaned.is_empty() {
        return Err(InboundRefusal::Empty);
    }
    let chars = cleaned.chars().count();
    if chars > MAX_INBOUND_CHARS {
        return Err(InboundRefusal::TooLong { chars, max: MAX_INBOUND_CHARS });
    }
    let author: String = author.chars().filter(|c| !c.is_control()).take(64).collect();
    Ok(format!("[Discord message from {author}]\n{cleaned}"))
}

/// How a reply reaches a session whose agent is working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Delivery {
    /// Queued until the current run is done (OMP's `deliverAs: "followUp"`);
    /// starts a run when the session is idle.
    #[default]
    FollowUp,
    /// Handed to the agent in the current run, after its current tool call
    /// (OMP's steering); starts a run when the session is idle.
    Steer,
}

impl Delivery {
    /// Whether this is the default, so frames can leave it out.
    #[must_use]
    pub fn is_follow_up(&self) -> bool {
        *self == Self::FollowUp
    }

    /// The journal's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FollowUp => "follow_up",
            Self::Steer => "steer",
        }
    }

    /// Reads the journal's name; anything unknown is a follow-up.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        if name == "steer" { Self::Steer } else { Self::FollowUp }
    }
}

/// The prefixes that turn a reply into a steer or a stop (configurable; an
/// empty string turns one off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// A reply starting with this steers the current run (the prefix is removed).
    pub steer_prefix: String,
    /// A reply that is exactly this (ignoring case and surrounding space) stops the current run.
    pub abort_command: String,
}

impl Default for Directives {
    fn default() -> Self {
        Self { steer_prefix: "!".to_owned(), abort_command: "!stop".to_owned() }
    }
}

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive<'a> {
    /// Pass `text` to the session, delivered as `delivery`.
    Deliver {
        /// How it reaches a busy session.
        delivery: Delivery,
        /// The text, without the prefix.
        text: &'a str,
    },
    /// Stop the session's current run.
    Abort,
}

/// Reads what a reply asks for: the stop command, a steer (by prefix), or by
/// default a follow-up with the whole text.
#[must_use]
pub fn parse_directive<'a>(content: &'a str, directives: &Directives) -> Directive<'a> {
    let trimmed = content.trim();
    let abort = directives.abort_command.trim();
    if !abort.is_empty() && trimmed.eq_ignore_ascii_case(abort) {
        return Directive::Abort;
    }
    let prefix = directives.steer_prefix.trim();
    if !prefix.is_empty()
        && let Some(rest) = trimmed.strip_prefix(prefix)
    {
        return Directive::Deliver { delivery: Delivery::Steer, text: rest.trim_start() };
    }
    Directive::Deliver { delivery: Delivery::FollowUp, text: content }
}

/// How many replies one person may send in a window (a token bucket: the
/// full allowance at once, then refilled evenly over the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Replies allowed in a burst, and per window.
    pub messages: u32,
    /// The window, in seconds.
    pub per_secs: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { messages: 10, per_secs: 60 }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages per {} s", self.messages, self.per_secs)
    }
}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected MESSAGES/SECONDS such as \"10/60\" (both above 0), or \"off\"")]
pub struct RateLimitSyntax;

impl RateLimit {
    /// Parses `MESSAGES/SECONDS` (`"10/60"`); `"off"` is `None` (no limit).
    ///
    /// # Errors
    ///
    /// [`RateLimitSyntax`] for anything else, or a zero.
    pub fn parse(text: &str) -> Result<Option<Self>, RateLimitSyntax> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (messages, secs) = text.split_once('/').ok_or(RateLimitSyntax)?;
        let messages: u32 = messages.trim().parse().map_err(|_| RateLimitSyntax)?;
        let per_secs: u32 = secs.trim().trim_end_matches('s').trim().parse().map_err(|_| RateLimitSyntax)?;
        if messages == 0 || per_secs == 0 {
            return Err(RateLimitSyntax);
        }
        Ok(Some(Self { messages, per_secs }))
    }
}

/// Whether a reply may go on to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the author's rate.
    Pass,
    /// Over it: not delivered. `tell` is true for the first refusal since the
    /// author's last passed reply (tell them once, not on every message);
    /// `retry_after_ms` is when the next reply would pass.
    Refuse {
        /// Whether to tell the author now.
        tell: bool,
        /// Milliseconds until a reply would pass again.
        retry_after_ms: u64,
    },
}

/// One token bucket per author. Time is passed in (e.g. the message's own
/// timestamp, so replies read again after a restart are judged as when they
/// were written); it never runs backwards within a bucket.
#[derive(Debug, Clone)]
pub struct InboundLimiter {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

/// The level is kept in 1/`messages`-millisecond units: a reply costs
/// `window_ms` units and each millisecond refills `messages` units, so the
/// arithmetic stays in integers.
#[derive(Debug, Clone)]
struct Bucket {
    level: u64,
    at_ms: u64,
    told: bool,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 1024;

impl InboundLimiter {
    /// A limiter allowing `limit` per author.
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: HashMap::new() }
    }

    /// The limit it applies.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    fn window_ms(&self) -> u64 {
        u64::from(self.limit.per_secs) * 1000
    }

    /// Takes one reply by `author` at `now_ms` out of their bucket, if it holds one.
    pub fn admit(&mut self, author: &str, now_ms: u64) -> Admission {
        let cost = self.window_ms();
        let refill = u64::from(self.limit.messages);
        let capacity = cost.saturating_mul(refill);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(author) {
            // Someone whose bucket has refilled is indistinguishable from someone new.
            self.buckets.retain(|_, b| {
                b.level.saturating_add(now_ms.saturating_sub(b.at_ms).saturating_mul(refill)) < capacity
            });
        }
        let bucket =
            self.buckets.entry(author.to_owned()).or_insert(Bucket { level: capacity, at_ms: now_ms, told: false });
        let now_ms = now_ms.max(bucket.at_ms);
        bucket.level = bucket.level.saturating_add((now_ms - bucket.at_ms).saturating_mul(refill)).min(capacity);
        bucket.at_ms = now_ms;
        if bucket.level >= cost {
            bucket.level -= cost;
            bucket.told = false;
            Admission::Pass
        } else {
            let tell = !bucket.told;
            bucket.told = true;
            Admission::Refuse { tell, retry_after_ms: (cost - bucket.level).div_ceil(refill) }
        }
    }
}

/// The note for someone over their rate: nothing they send until
/// `retry_after_ms` from now reaches the agent.
#[must_use]
pub fn rate_limited_note(limit: RateLimit, retry_after_ms: u64) -> String {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    format!(
        "⏳ Slow down: replies are limited to {limit}. This one and any more in the next {secs} s are not passed \
         on to the agent; send it again after that."
    )
}

/// The private answer to a click, modal or command from someone over their
/// rate (the same budget as their replies): nothing was done.
#[must_use]
pub fn interaction_limited_note(limit: RateLimit, retry_after_ms: u64) -> String {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    format!("⏳ Slow down: each person may drive the agent {limit}. Nothing was done; try again in {secs} s.")
}

/// The note in the thread of a session that is not connected when someone
/// replies: the reply waits for it, how to bring it back, and (when the
/// project is configured) how to start new work there instead.
#[must_use]
pub fn session_away_note(project: &str, host: &str, askable: bool) -> String {
    let project = crate::markdown::escape_markdown(project);
    let host = crate::markdown::escape_markdown(host);
    let mut note = format!(
        "💤 This session ({project} on {host}) is not connected right now, so your message waits here; it reaches \
         the session when it reconnects (if it ended: `omp --continue` in {project})."
    );
    if askable {
        note.push_str(&format!(" To start new work there now: `/omp ask` with project {project}."));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_away_note_offers_omp_ask_only_for_configured_projects() {
        let plain = session_away_note("shop_api", "vm", false);
        assert!(plain.contains("shop\\_api on vm") && plain.contains("omp --continue"), "{plain}");
        assert!(!plain.contains("/omp ask"));
        assert!(session_away_note("shop", "vm", true).ends_with("`/omp ask` with project shop."));
    }

    #[test]
    fn directives_pick_follow_up_steer_or_stop() {
        let d = Directives::default();
        assert_eq!(
            parse_directive("run the tests", &d),
            Directive::Deliver { delivery: Delivery::FollowUp, text: "run the tests" }
        );
        assert_eq!(
            parse_directive("  ! focus on the parser", &d),
            Directive::Deliver { delivery: Delivery::Steer, text: "focus on the parser" }
        );
        assert_eq!(parse_directive(" !STOP ", &d), Directive::Abort);
        // Only the exact command stops; more text after it is a steer.
        assert_eq!(
            parse_directive("!stop and look at x", &d),
            Directive::Deliver { delivery: Delivery::Steer, text: "stop and look at x" }
        );
        let off = Directives { steer_prefix: String::new(), abort_command: String::new() };
        assert_eq!(parse_directive("!stop", &off), Directive::Deliver { delivery: Delivery::FollowUp, text: "!stop" });
        let custom = Directives { steer_prefix: ">>".into(), abort_command: "halt".into() };
        assert_eq!(parse_directive("Halt", &custom), Directive::Abort);
        assert_eq!(parse_directive(">>now", &custom), Directive::Deliver { delivery: Delivery::Steer, text: "now" });
        assert_eq!(Delivery::from_name(Delivery::Steer.as_str()), Delivery::Steer);
        assert_eq!(Delivery::from_name("anything"), Delivery::FollowUp);
    }

    #[test]
    fn rates_parse() {
        assert_eq!(RateLimit::parse("10/60"), Ok(Some(RateLimit { messages: 10, per_secs: 60 })));
        assert_eq!(RateLimit::parse(" 3 / 5s "), Ok(Some(RateLimit { messages: 3, per_secs: 5 })));
        assert_eq!(RateLimit::parse("OFF"), Ok(None));
        for bad in ["", "10", "0/60", "10/0", "a/b", "-1/60"] {
            assert_eq!(RateLimit::parse(bad), Err(RateLimitSyntax), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_one_refusal_is_told_until_the_bucket_refills() {
        let mut limiter = InboundLimiter::new(RateLimit { messages: 3, per_secs: 60 });
        for _ in 0..3 {
            assert_eq!(limiter.admit("ana", 1_000), Admission::Pass);
        }
        assert_eq!(limiter.admit("ana", 1_000), Admission::Refuse { tell: true, retry_after_ms: 20_000 });
        assert_eq!(limiter.admit("ana", 11_000), Admission::Refuse { tell: false, retry_after_ms: 10_000 });
        // Someone else has their own bucket.
        assert_eq!(limiter.admit("bo", 11_000), Admission::Pass);
        // One reply's worth refills in 60/3 = 20 s.
        assert_eq!(limiter.admit("ana", 21_000), Admission::Pass);
        assert_eq!(limiter.admit("ana", 21_000), Admission::Refuse { tell: true, retry_after_ms: 20_000 });
        // Time never runs backwards within a bucket (an older message read late).
        assert!(matches!(limiter.admit("ana", 0), Admission::Refuse { tell: false, .. }));
        // A full window refills the whole burst, never more.
        for _ in 0..3 {
            assert_eq!(limiter.admit("ana", 1_000_000), Admission::Pass);
        }
        assert!(matches!(limiter.admit("ana", 1_000_000), Admission::Refuse { .. }));
    }

    #[test]
    fn many_authors_do_not_grow_the_limiter_without_bound() {
        let mut limiter = InboundLimiter::new(RateLimit { messages: 1, per_secs: 1 });
        for n in 0..5_000u64 {
            assert_eq!(limiter.admit(&n.to_string(), n * 2_000), Admission::Pass);
        }
        assert!(limiter.buckets.len() <= MAX_BUCKETS);
        assert!(rate_limited_note(limiter.limit(), 1_500).contains("next 2 s"));
    }

    #[test]
    fn replies_are_attributed_and_cleaned() {
        let text = prepare_inbound("ana", "  please run\u{0007} the tests\n\tnow  ").unwrap();
        assert_eq!(text, "[Discord message from ana]\nplease run the tests\n\tnow");
    }

    #[test]
    fn empty_and_oversized_are_refused() {
        assert_eq!(prepare_inbound("a", " \u{0000} "), Err(InboundRefusal::Empty));
        let long = "é".repeat(MAX_INBOUND_CHARS + 1);
        assert_eq!(prepare_inbound("a", &long), Err(InboundRefusal::TooLong { chars: 4001, max: 4000 }));
        assert!(prepare_inbound("a", &"é".repeat(MAX_INBOUND_CHARS)).is_ok());
    }
}
