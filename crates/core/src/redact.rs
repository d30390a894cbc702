//! Secret detection and replacement for everything bound for Discord, and
//! for tool results handed back to the model.
//!
//! Each secret is replaced by `[REDACTED:<kind>]`. What is recognised:
//!
//! - **Prefixed tokens**, by prefix, alphabet and length: GitHub (`ghp_`,
//!   `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), GitLab (`glpat-`,
//!   `gldt-`, `glrt-`, …), Slack (`xoxb-`, `xoxp-`, `xapp-`, …), Stripe
//!   (`sk_live_`, `rk_live_`, `sk_test_`, `whsec_`), OpenAI (`sk-`,
//!   `sk-proj-`), Anthropic (`sk-ant-`), Hugging Face (`hf_`), npm (`npm_`),
//!   PyPI (`pypi-AgE…`), crates.io (`cio…`), Google (`AIza…`, `GOCSPX-`,
//!   `ya29.`), AWS access key ids (`AKIA…`, `ASIA…`), and about thirty more
//!   (DigitalOcean, Docker Hub, Vault, SendGrid, Doppler, Grafana, …).
//! - **Shapes checked by decoding**: JWTs (the header decodes to JSON with
//!   an `alg`), Discord bot tokens (the first part decodes to a snowflake),
//!   Telegram bot tokens, Azure AD client secrets.
//! - **Blocks and URLs**: PEM and OpenSSH private keys (BEGIN to END),
//!   Discord and Slack webhook URLs (the secret path segment), the password
//!   in `scheme://user:password@host`.
//! - **Context**: `Authorization: Bearer|Basic|Bot …` and a bare
//!   `Bearer …`; assignments whose key names a secret (`*_KEY`, `*_SECRET`,
//!   `*_TOKEN`, `PASSWORD`, `passwd`, `api_key`, `client_secret`,
//!   `AccountKey`, …) in env, shell, YAML, JSON, TOML, XML, connection
//!   strings and `--flag value` command lines, when the value looks like a
//!   secret (length, character mix, entropy, not a placeholder or a variable
//!   reference). A value of letters only is told from an identifier
//!   (`accessToken`) by its letter pairs: random letters are full of pairs
//!   that words rarely use (`words.rs`, table from `scripts/bigram-table.py`).
//!
//! A secret found once is redacted wherever else it appears in the same
//! text, e.g. a password echoed later without its key.
//!
//! Left alone: hashes, UUIDs, lockfile `integrity` strings, public keys and
//! certificates, Discord snowflakes, placeholders (`<your-token>`, `xxxx`,
//! `${TOKEN}`, `changeme`, `***`) and text that was already redacted, so
//! redacting twice changes nothing.
//!
//! The text is scanned once, byte by byte, in linear time: runs of token
//! bytes are classified by their first bytes and shape, and operators
//! (`=`, `:`, `>`, `://`) by the key before them. No regular expression is
//! run over the text.
//!
//! ```
//! use omp_discord_core::redact::{redact_text, redact_with_report};
//!
//! let out = redact_text("export GITHUB_TOKEN=ghp_FAKE0123456789abcdefghijklmnopqrstuv");
//! assert_eq!(out, "export GITHUB_TOKEN=[REDACTED:github-token]");
//!
//! let redacted = redact_with_report("password: hunter22 and again hunter22");
//! assert_eq!(redacted.text, "password: [REDACTED:password] and again [REDACTED:password]");
//! assert_eq!(redacted.report.count, 2);
//! assert_eq!(redacted.report.kinds["password"], 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assign;
mod repeats;
mod rules;
mod scan;
mod shape;
mod words;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

/// One secret found in a text, as a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of secret, e.g. `github-token`.
    pub kind: &'static str,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

/// How many secrets a redaction replaced, by kind: the audit count that
/// goes into a tool result's `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedactionReport {
    /// Number of secrets replaced.
    pub count: usize,
    /// Number replaced per kind, e.g. `{"github-token": 1}`.
    pub kinds: BTreeMap<&'static str, usize>,
}

impl RedactionReport {
    fn of(findings: &[Finding]) -> Self {
        let mut kinds = BTreeMap::new();
        for f in findings {
            *kinds.entry(f.kind).or_insert(0) += 1;
        }
        RedactionReport { count: findings.len(), kinds }
    }
}

/// A redacted text with its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'a> {
    /// The text with every secret replaced; borrowed when nothing was found.
    pub text: Cow<'a, str>,
    /// What was replaced.
    pub report: RedactionReport,
}

/// Secret detection with options. [`Redactor::default()`] is what
/// [`find_secrets`] and [`redact_text`] use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redactor {
    high_entropy: bool,
}

impl Redactor {
    /// The standard rules (see the module docs).
    #[must_use]
    pub const fn new() -> Self {
        Redactor { high_entropy: false }
    }

    /// The standard rules plus any run of 24 or more token bytes that mixes
    /// upper case, lower case and digits with high entropy (kind
    /// `high-entropy`). Over-redacts (base64 blobs, some identifiers); meant
    /// as the fallback when a caller cannot afford a miss.
    #[must_use]
    pub const fn conservative() -> Self {
        Redactor { high_entropy: true }
    }

    /// Finds secrets in `text`, in order, without overlaps.
    #[must_use]
    pub fn find(&self, text: &str) -> Vec<Finding> {
        self.find_and_replace(text).0
    }

    /// The findings, and the redacted text when it was built on the way.
    fn find_and_replace(&self, text: &str) -> (Vec<Finding>, Option<String>) {
        let mut found = self.find_once(text);
        // Redacting twice must change nothing. A replacement changes what
        // its neighbours read as: it can split a run of token bytes (a repeat
        // inside other text, a key glued to its neighbour) or end a token
        // that a rule only accepts at a boundary. Scan the lines around each
        // replacement again and fold in what that finds, with every other
        // copy of a secret found so, until nothing more is found (twice at
        // most).
        for _ in 0..2 {
            if found.is_empty() {
                break;
            }
            let out = replace(text, &found).into_owned();
            let again = self.rescan_lines(&out, &found);
            if again.is_empty() {
                // The text redacted with these findings is the result.
                return (found, Some(out));
            }
            found = redact_repeats(text, merge_rescan(text, found, &again));
        }
        (found, None)
    }

    /// Scans the lines of the redacted text `out` that hold a replacement;
    /// returns the findings in its offsets. (Only those lines can read
    /// differently once redacted.)
    fn rescan_lines(&self, out: &str, found: &[Finding]) -> Vec<Finding> {
        const MAX_LINE: usize = 4096;
        let o = out.as_bytes();
        let mut windows: Vec<(usize, usize)> = Vec::new();
        let mut out_pos = 0;
        let mut last = 0;
        for f in found {
            let start = out_pos + (f.start - last);
            let end = start + "[REDACTED:]".len() + f.kind.len();
            out_pos = end;
            last = f.end;
            let lo = start.saturating_sub(MAX_LINE);
            let ws = memchr::memrchr(b'\n', &o[lo..start]).map_or(lo, |i| lo + i + 1);
            let hi = (end + MAX_LINE).min(o.len());
            let we = memchr::memchr(b'\n', &o[end..hi]).map_or(hi, |i| end + i);
            match windows.last_mut() {
                Some(w) if ws <= w.1 => w.1 = w.1.max(we),
                _ => windows.push((ws, we)),
            }
        }
        let mut again = Vec::new();
        for (ws, we) in windows {
            // Bounds are line ends, or bytes far from the split: step to
            // char boundaries should one land inside a character.
            let ws = (0..=ws).rev().find(|&i| out.is_char_boundary(i)).unwrap_or(0);
            let we = (we..=out.len()).find(|&i| out.is_char_boundary(i)).unwrap_or(out.len());
            again.extend(self.find_once(&out[ws..we]).into_iter().map(|f| Finding {
                kind: f.kind,
                start: f.start + ws,
                end: f.end + ws,
            }));
        }
        again
    }

    fn find_once(&self, text: &str) -> Vec<Finding> {
        let mut scanner = scan::Scanner::new(text, self.high_entropy);
        scanner.scan();
        redact_repeats(text, scanner.out)
    }

    /// Replaces every secret in `text` with `[REDACTED:<kind>]` and counts
    /// them.
    #[must_use]
    pub fn redact<'a>(&self, text: &'a str) -> Redacted<'a> {
        let (findings, out) = self.find_and_replace(text);
        let report = RedactionReport::of(&findings);
        let text = match out {
            Some(out) => Cow::Owned(out),
            None => replace(text, &findings),
        };
        Redacted { text, report }
    }
}

/// Finds secrets in `text`, in order, without overlaps.
#[must_use]
pub fn find_secrets(text: &str) -> Vec<Finding> {
    Redactor::new().find(text)
}

/// Replaces every secret in `text` with `[REDACTED:<kind>]`; borrows when there is none.
#[must_use]
pub fn redact_text(text: &str) -> Cow<'_, str> {
    Redactor::new().redact(text).text
}

/// `value` with every secret in it replaced, judged on its JSON text (so a
/// key such as `"password"` gives its value the context a secret needs). If
/// a replacement broke the JSON, the redacted text is kept as one string:
/// nothing of the secret survives either way.
#[must_use]
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    let text = value.to_string();
    match redact_text(&text) {
        Cow::Borrowed(_) => value.clone(),
        Cow::Owned(redacted) => match serde_json::from_str(&redacted) {
            Ok(value) => value,
            Err(_) => serde_json::Value::String(redacted),
        },
    }
}

/// Like [`redact_text`], and also says how many secrets of which kinds were
/// replaced.
#[must_use]
pub fn redact_with_report(text: &str) -> Redacted<'_> {
    Redactor::new().redact(text)
}

fn replace<'a>(text: &'a str, findings: &[Finding]) -> Cow<'a, str> {
    if findings.is_empty() {
        return Cow::Borrowed(text);
    }
    // The exact length: a realloc would copy the whole text once more.
    let len = findings.iter().fold(text.len(), |n, f| n - (f.end - f.start) + "[REDACTED:]".len() + f.kind.len());
    let mut out = String::with_capacity(len);
    let mut last = 0;
    for finding in findings {
        out.push_str(&text[last..finding.start]);
        out.push_str("[REDACTED:");
        out.push_str(finding.kind);
        out.push(']');
        last = finding.end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// A secret found once may appear again where the scan cannot recognise it:
/// a password echoed by a later command without its key, a token glued to
/// other text. Redact every other occurrence of each found secret too, in
/// one sampled pass over the text (only when something was found).
fn redact_repeats(text: &str, found: Vec<Finding>) -> Vec<Finding> {
    const MAX_REPEATED: usize = 512;
    if found.is_empty() {
        return found;
    }
    // Long values (private key blocks) are not worth searching for byte by
    // byte: their own markers find every copy.
    let mut values: Vec<(&[u8], &'static str)> = found
        .iter()
        .filter(|f| f.end - f.start <= MAX_REPEATED)
        .map(|f| (&text.as_bytes()[f.start..f.end], f.kind))
        .collect();
    if values.is_empty() {
        return found;
    }
    values.sort_unstable_by_key(|&(v, _)| v);
    values.dedup_by_key(|&mut (v, _)| v);
    let search = repeats::Repeats::new(values.iter().map(|&(v, _)| v).collect());
    let mut extra = Vec::new();
    let mut k = 0; // first finding that ends after the current match starts
    search.for_each_match(text.as_bytes(), |start, end, i| {
        while k < found.len() && found[k].end <= start {
            k += 1;
        }
        if k < found.len() && found[k].start < end {
            return; // overlaps a finding, usually the very one it came from
        }
        debug_assert_eq!(search.needle(i), values[i].0);
        extra.push(Finding { kind: values[i].1, start, end });
    });
    if extra.is_empty() {
        return found;
    }
    let mut all = found;
    all.extend(extra);
    all.sort_unstable_by_key(|f| f.start);
    all
}

/// Merges findings from a scan of the redacted text (`again`, in its
/// offsets) into `found` (offsets in `text`).
fn merge_rescan(text: &str, found: Vec<Finding>, again: &[Finding]) -> Vec<Finding> {
    // Where each replacement sits in the redacted text, and what it replaced.
    let mut spans = Vec::with_capacity(found.len()); // (out_start, out_end, start, end)
    let mut out_pos = 0;
    let mut last = 0;
    for f in &found {
        let out_start = out_pos + (f.start - last);
        let out_end = out_start + "[REDACTED:]".len() + f.kind.len();
        spans.push((out_start, out_end, f.start, f.end));
        out_pos = out_end;
        last = f.end;
    }
    // An offset in the redacted text, as an offset in `text`: inside a
    // replacement it widens to the replaced range.
    let map = |p: usize, is_end: bool| -> usize {
        let k = spans.partition_point(|&(os, _, _, _)| if is_end { os < p } else { os <= p });
        let Some(&(_, oe, ts, te)) = k.checked_sub(1).map(|k| &spans[k]) else {
            return p;
        };
        match (is_end, p) {
            (false, p) if p < oe => ts,
            (true, p) if p <= oe => te,
            _ => te + (p - oe),
        }
    };
    let mut all = found;
    for f in again {
        let start = map(f.start, false);
        let end = map(f.end, true).max(start + 1).min(text.len());
        all.push(Finding { kind: f.kind, start, end });
    }
    all.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut merged: Vec<Finding> = Vec::with_capacity(all.len());
    for f in all {
        match merged.last_mut() {
            Some(last) if f.start < last.end => last.end = last.end.max(f.end),
            _ => merged.push(f),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        redact_text(text).into_owned()
    }

    #[test]
    fn json_values_are_redacted_in_place_and_stay_json() {
        // Put together here, so no scanner takes this file for a leak.
        let password = ["Zq8vT2", "mXw9KpL4rN"].concat();
        let input = serde_json::json!({
            "command": "curl -H 'Authorization: token ghp_FAKE456789abcdefghijklmnopqrstuvwxyzAB' api",
            "env": { "password": password },
            "n": 3
        });
        let clean = redact_json(&input);
        let text = clean.to_string();
        assert!(!text.contains("ghp_FAKE") && !text.contains(&password), "{text}");
        assert_eq!(clean["n"], 3, "still JSON: {text}");
        let plain = serde_json::json!({ "command": "ls -la" });
        assert_eq!(redact_json(&plain), plain);
    }

    #[test]
    fn github_token_is_redacted() {
        let text = "export GH=ghp_FAKE456789abcdefghijklmnopqrstuvwxyzAB done";
        assert_eq!(redact_text(text), "export GH=[REDACTED:github-token] done");
    }

    /// The Stripe key is only found once the npm token glued to it on line
    /// 2 is redacted (its copy on line 3 gives that token away); the copy of
    /// the Stripe key glued to a word on line 1 must go too.
    #[test]
    fn a_secret_found_on_the_rescan_is_redacted_everywhere() {
        let stripe = "sk_live_FAKE3pHxYXHOEy3dt2ySYVsNKb"; // fake
        let npm = "npm_FAKEDQVPjAPNMKQc8PSgkXirhx798K2yudmI"; // fake
        let text = format!("word{stripe}\n{npm}{stripe}\n{npm}");
        assert_eq!(
            redacted(&text),
            "word[REDACTED:stripe-key]\n[REDACTED:npm-token][REDACTED:stripe-key]\n[REDACTED:npm-token]"
        );
    }

    #[test]
    fn near_misses_pass_through_borrowed() {
        for text in [
            "ghp_short",
            "task-force",
            "sk-learn is a library",
            "AKIA",
            "commit 3f2a9c1e8b7d6f5a4e3d2c1b0a9f8e7d6c5b4a39",
            "id 8d3e4f5a-1b2c-4d5e-8f9a-0b1c2d3e4f5a",
            "\"integrity\": \"sha512-FAKEq8ZK2mVx0pLr7TyN4bWsFAKEq8ZK2mVx0pLr7TyN4bWs+/==\"",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE me@host",
            "channel 1234567890123456789",
            "token: <your-token>",
            "GITHUB_TOKEN=${GITHUB_TOKEN}",
            "password: changeme",
            "api_key = \"xxxxxxxxxxxxxxxx\"",
            "-----BEGIN PUBLIC KEY-----\nMIIBFAKE\n-----END PUBLIC KEY-----",
        ] {
            assert!(matches!(redact_text(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        let once = redacted("a sk-ant-FAKEefghijklmnopqrstuvwxyz0123456789 b password=hunter22");
        assert_eq!(redacted(&once), once);
    }

    #[test]
    fn private_key_block_is_redacted_whole() {
        let text = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAFAKE\nAAAAFAKE==\n-----END OPENSSH PRIVATE KEY-----\ndone";
        assert_eq!(redacted(text), "key:\n[REDACTED:private-key]\ndone");
        let truncated = "-----BEGIN RSA PRIVATE KEY-----\nMIIEFAKEpAIBAAKCAQEA\nFAKEFAKE";
        assert_eq!(redacted(truncated), "[REDACTED:private-key]");
    }

    #[test]
    fn url_password_is_redacted() {
        assert_eq!(
            redacted("postgres://app:FAKEs3cret@db:5432/app"),
            "postgres://app:[REDACTED:url-password]@db:5432/app"
        );
        assert_eq!(
            redacted("https://oauth2:glpat-FAKE0123456789abcdefgh@gitlab.com/x.git"),
            "https://oauth2:[REDACTED:gitlab-token]@gitlab.com/x.git"
        );
        assert_eq!(redacted("http://localhost:8080/a@b"), "http://localhost:8080/a@b");
    }

    #[test]
    fn authorization_headers_keep_their_scheme() {
        assert_eq!(
            redacted("curl -H 'Authorization: Bearer FAKEabc123def456ghi789' x"),
            "curl -H 'Authorization: Bearer [REDACTED:authorization]' x"
        );
        assert_eq!(
            redacted("Authorization: Basic dXNlcjpGQUtFcGFzcw=="),
            "Authorization: Basic [REDACTED:authorization]"
        );
    }

    #[test]
    fn webhooks_keep_their_id() {
        let token = "FAKE_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX-yz";
        let text = format!("https://discord.com/api/webhooks/123456789012345678/{token}");
        assert_eq!(redacted(&text), "https://discord.com/api/webhooks/123456789012345678/[REDACTED:discord-webhook]");
    }

    #[test]
    fn found_secrets_are_redacted_where_they_repeat() {
        let r = redact_with_report("DB_PASSWORD=FAKEpw9x7\nconnecting with FAKEpw9x7");
        assert_eq!(r.text, "DB_PASSWORD=[REDACTED:password]\nconnecting with [REDACTED:password]");
        assert_eq!(r.report.count, 2);
    }

    #[test]
    fn findings_are_ordered_and_disjoint() {
        let text = "a=1 token=FAKEq8ZK2mVx0pLr7TyN x FAKEq8ZK2mVx0pLr7TyN ghp_FAKE0123456789abcdefghijklmnopqrstuv";
        let f = find_secrets(text);
        assert_eq!(f.len(), 3);
        assert!(f.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn conservative_mode_catches_unlabelled_tokens() {
        let text = "blob q8ZK2mVx0pLr7TyN4bWs0Ft9Lc3 end";
        assert!(find_secrets(text).is_empty());
        let f = Redactor::conservative().find(text);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "high-entropy");
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Finding>();
        assert_send_sync::<Redactor>();
        assert_send_sync::<RedactionReport>();
        assert_send_sync::<Redacted<'static>>();
    }
}
