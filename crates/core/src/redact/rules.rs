//! Token formats recognised on their own, without surrounding context: a
//! literal prefix followed by a body of a known alphabet and length
//! (`ghp_…`, `sk-ant-…`, `AKIA…`), and a few shapes checked by decoding
//! (JWTs, Discord bot tokens) or by their separators (Telegram bot tokens,
//! Azure AD client secrets, dotted Vault/SendGrid/Google tokens).
//!
//! Formats were checked against gitleaks' public rule file and the vendors'
//! token documentation; bounds are slightly wider than documented so that a
//! vendor lengthening its tokens does not silently defeat redaction.

use super::shape::{Mix, Set, b64_decode, is_b64, is_low_variety, is_low_variety_hex, is_tok};
use super::words::reads_as_words;

/// The body must contain both a digit and a letter, or letters of randomly
/// flipping case (rules whose prefix is short or reads like a word, such as
/// `sk-` or `key-`).
const MIXED: u8 = 1;
/// The token may continue with standard base64 bytes (`+`, `/`, `=`) that
/// end a candidate run.
const B64_TAIL: u8 = 2;
/// An optional `.xxxxxxxxx` suffix belongs to the token (GitLab's routable
/// tokens).
const DOT_TAIL: u8 = 4;

/// One prefixed token format.
struct Rule {
    prefix: &'static [u8],
    kind: &'static str,
    set: Set,
    min: usize,
    max: usize,
    flags: u8,
}

const fn r(prefix: &'static [u8], kind: &'static str, set: Set, min: usize, max: usize, flags: u8) -> Rule {
    Rule { prefix, kind, set, min, max, flags }
}

use Set::{Alnum, B64Url, Hex, HexLower, UpperAlnum, Word};

// Rules are grouped by first byte so that a candidate is compared with a
// handful of prefixes at most; within a group, longer prefixes come first.
static RULES_A: &[Rule] = &[
    r(b"AGE-SECRET-KEY-1", "age-secret-key", UpperAlnum, 58, 58, 0),
    r(b"ATATT3", "atlassian-token", B64Url, 150, 250, B64_TAIL),
    r(b"AKCp", "artifactory-key", Alnum, 69, 80, 0),
    r(b"AIza", "gcp-api-key", B64Url, 35, 35, 0),
    r(b"AKIA", "aws-access-key-id", UpperAlnum, 16, 16, 0),
    r(b"ASIA", "aws-access-key-id", UpperAlnum, 16, 16, 0),
    r(b"ABIA", "aws-access-key-id", UpperAlnum, 16, 16, 0),
    r(b"ACCA", "aws-access-key-id", UpperAlnum, 16, 16, 0),
    r(b"A3T", "aws-access-key-id", UpperAlnum, 17, 17, 0),
];
static RULES_E: &[Rule] = &[
    r(b"EAAM", "facebook-token", Alnum, 100, 400, 0),
    r(b"EAAC", "facebook-token", Alnum, 100, 400, 0),
    r(b"EAAA", "square-token", B64Url, 22, 100, MIXED),
];
static RULES_G: &[Rule] =
    &[r(b"GOCSPX-", "gcp-oauth-secret", B64Url, 28, 32, 0), r(b"GR1348941", "gitlab-token", B64Url, 20, 40, 0)];
static RULES_H: &[Rule] = &[r(b"HRKU-AA", "heroku-key", B64Url, 58, 58, 0)];
static RULES_L: &[Rule] = &[r(b"LTAI", "alibaba-access-key-id", Alnum, 20, 20, MIXED)];
static RULES_N: &[Rule] = &[r(b"NRAK-", "newrelic-key", UpperAlnum, 27, 27, 0)];
static RULES_P: &[Rule] = &[r(b"PMAK-", "postman-key", B64Url, 59, 59, MIXED)];
static RULES_S: &[Rule] = &[r(b"SK", "twilio-key", Hex, 32, 32, MIXED)];
static RULES_LOWER_A: &[Rule] = &[r(b"api_org_", "huggingface-token", Alnum, 34, 34, 0)];
static RULES_LOWER_C: &[Rule] = &[r(b"cio", "crates-io-token", Alnum, 32, 32, MIXED)];
static RULES_LOWER_D: &[Rule] = &[
    r(b"dop_v1_", "digitalocean-token", HexLower, 64, 64, 0),
    r(b"doo_v1_", "digitalocean-token", HexLower, 64, 64, 0),
    r(b"dor_v1_", "digitalocean-token", HexLower, 64, 64, 0),
    r(b"dckr_pat_", "docker-hub-token", B64Url, 27, 40, 0),
    r(b"dapi", "databricks-token", HexLower, 32, 34, MIXED),
];
static RULES_LOWER_F: &[Rule] = &[
    r(b"figd_", "figma-token", B64Url, 40, 60, 0),
    r(b"fo1_", "fly-token", B64Url, 43, 43, 0),
    r(b"fm2_", "fly-token", B64Url, 100, 2000, B64_TAIL),
];
static RULES_LOWER_G: &[Rule] = &[
    r(b"github_pat_", "github-token", Word, 40, 255, 0),
    r(b"ghp_", "github-token", Alnum, 36, 251, 0),
    r(b"gho_", "github-token", Alnum, 36, 251, 0),
    r(b"ghu_", "github-token", Alnum, 36, 251, 0),
    r(b"ghs_", "github-token", Alnum, 36, 251, 0),
    r(b"ghr_", "github-token", Alnum, 36, 251, 0),
    r(b"glagent-", "gitlab-token", B64Url, 50, 300, 0),
    r(b"glsoat-", "gitlab-token", B64Url, 20, 300, 0),
    r(b"glffct-", "gitlab-token", B64Url, 20, 300, 0),
    r(b"glimt-", "gitlab-token", B64Url, 25, 300, 0),
    r(b"gloas-", "gitlab-token", B64Url, 64, 300, 0),
    r(b"glpat-", "gitlab-token", B64Url, 20, 300, DOT_TAIL),
    r(b"glptt-", "gitlab-token", Hex, 40, 40, 0),
    r(b"glcbt-", "gitlab-token", B64Url, 20, 300, 0),
    r(b"gldt-", "gitlab-token", B64Url, 20, 300, DOT_TAIL),
    r(b"glrt-", "gitlab-token", B64Url, 20, 300, DOT_TAIL),
    r(b"glft-", "gitlab-token", B64Url, 20, 300, 0),
    r(b"glsa_", "grafana-token", B64Url, 41, 41, 0),
    r(b"glc_", "grafana-token", B64Url, 32, 400, B64_TAIL),
    r(b"gsk_", "groq-key", Alnum, 52, 52, 0),
];
static RULES_LOWER_H: &[Rule] = &[r(b"hf_", "huggingface-token", Alnum, 34, 34, 0)];
static RULES_LOWER_K: &[Rule] = &[r(b"key-", "mailgun-key", HexLower, 32, 32, MIXED)];
static RULES_LOWER_L: &[Rule] = &[r(b"lin_api_", "linear-key", Alnum, 40, 40, 0)];
static RULES_LOWER_N: &[Rule] = &[
    r(b"npm_", "npm-token", Alnum, 36, 36, 0),
    r(b"ntn_", "notion-token", Alnum, 46, 46, 0),
    r(b"nfp_", "netlify-token", Alnum, 36, 48, 0),
];
static RULES_LOWER_O: &[Rule] = &[r(b"ops_eyJ", "1password-token", B64Url, 200, 2000, B64_TAIL)];
static RULES_LOWER_P: &[Rule] = &[
    r(b"pypi-AgE", "pypi-token", B64Url, 47, 1000, 0),
    r(b"pscale_oauth_", "planetscale-token", B64Url, 32, 64, 0),
    r(b"pscale_tkn_", "planetscale-token", B64Url, 32, 64, 0),
    r(b"pscale_pw_", "planetscale-token", B64Url, 32, 64, 0),
    r(b"pplx-", "perplexity-key", Alnum, 48, 48, 0),
    r(b"pul-", "pulumi-token", HexLower, 40, 40, 0),
];
static RULES_LOWER_R: &[Rule] = &[
    r(b"rk_live_", "stripe-key", Alnum, 10, 255, MIXED),
    r(b"rk_test_", "stripe-key", Alnum, 10, 255, MIXED),
    r(b"r8_", "replicate-token", Alnum, 37, 40, MIXED),
];
static RULES_LOWER_S: &[Rule] = &[
    r(b"sk-ant-", "anthropic-key", B64Url, 32, 400, 0),
    r(b"sk-proj-", "openai-key", B64Url, 32, 400, 0),
    r(b"sk-svcacct-", "openai-key", B64Url, 32, 400, 0),
    r(b"sk-admin-", "openai-key", B64Url, 32, 400, 0),
    r(b"sk-None-", "openai-key", B64Url, 32, 400, 0),
    r(b"sk-or-v1-", "openrouter-key", HexLower, 64, 64, 0),
    r(b"sk-", "openai-key", B64Url, 32, 400, MIXED),
    r(b"sk_live_", "stripe-key", Alnum, 10, 255, MIXED),
    r(b"sk_test_", "stripe-key", Alnum, 10, 255, MIXED),
    r(b"sk_prod_", "stripe-key", Alnum, 10, 255, MIXED),
    r(b"shpat_", "shopify-token", Hex, 32, 32, 0),
    r(b"shpca_", "shopify-token", Hex, 32, 32, 0),
    r(b"shppa_", "shopify-token", Hex, 32, 32, 0),
    r(b"shpss_", "shopify-token", Hex, 32, 32, 0),
    r(b"sntryu_", "sentry-token", HexLower, 64, 64, 0),
    r(b"sntrys_", "sentry-token", B64Url, 50, 400, B64_TAIL),
    r(b"sq0atp-", "square-token", B64Url, 22, 60, 0),
    r(b"sq0csp-", "square-token", B64Url, 40, 60, 0),
    r(b"sbp_", "supabase-token", HexLower, 40, 40, 0),
];
static RULES_LOWER_W: &[Rule] = &[r(b"whsec_", "stripe-key", B64Url, 24, 64, MIXED)];
static RULES_LOWER_X: &[Rule] = &[
    r(b"xoxb-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xoxp-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xoxa-", "slack-token", B64Url, 10, 300, MIXED),
    r(b"xoxr-", "slack-token", B64Url, 10, 300, MIXED),
    r(b"xoxs-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xoxo-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xoxe-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xapp-", "slack-token", B64Url, 20, 300, MIXED),
    r(b"xai-", "xai-key", Alnum, 70, 90, 0),
];

fn rules_for(first: u8) -> &'static [Rule] {
    match first {
        b'A' => RULES_A,
        b'E' => RULES_E,
        b'G' => RULES_G,
        b'H' => RULES_H,
        b'L' => RULES_L,
        b'N' => RULES_N,
        b'P' => RULES_P,
        b'S' => RULES_S,
        b'a' => RULES_LOWER_A,
        b'c' => RULES_LOWER_C,
        b'd' => RULES_LOWER_D,
        b'f' => RULES_LOWER_F,
        b'g' => RULES_LOWER_G,
        b'h' => RULES_LOWER_H,
        b'k' => RULES_LOWER_K,
        b'l' => RULES_LOWER_L,
        b'n' => RULES_LOWER_N,
        b'o' => RULES_LOWER_O,
        b'p' => RULES_LOWER_P,
        b'r' => RULES_LOWER_R,
        b's' => RULES_LOWER_S,
        b'w' => RULES_LOWER_W,
        b'x' => RULES_LOWER_X,
        _ => &[],
    }
}

/// End of the run of token bytes starting at `s`.
#[inline]
pub(super) fn run_end(t: &[u8], s: usize) -> usize {
    let mut e = s;
    // Eight bytes at a time: most runs end within the first word, without
    // a mispredicted branch per byte.
    while let Some(word) = t.get(e..e + 8) {
        let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let other = !tok_bytes(w) & HIGH;
        if other != 0 {
            return e + (other.trailing_zeros() / 8) as usize;
        }
        e += 8;
    }
    while e < t.len() && is_tok(t[e]) {
        e += 1;
    }
    e
}

const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `w` that is a token byte (`[A-Za-z0-9_-]`).
#[inline(always)]
fn tok_bytes(w: u64) -> u64 {
    // On 7-bit bytes, adding `0x80 - lo` sets the high bit exactly when the
    // byte is `>= lo`, and adding `0x7f - hi` when it is `> hi`; no carry
    // crosses into the next byte.
    #[inline(always)]
    fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
        (x + ONES * u64::from(0x80 - lo)) & !(x + ONES * u64::from(0x7f - hi))
    }
    let x = w & !HIGH;
    let m = in_range(x | (ONES * 0x20), b'a', b'z')
        | in_range(x, b'0', b'9')
        | in_range(x, b'_', b'_')
        | in_range(x, b'-', b'-');
    // Bytes of 0x80 and above are no token bytes.
    m & !w & HIGH
}

/// Classifies the candidate run `t[s..e]` (a maximal run of token bytes) as
/// a known token. Returns the kind and where the token ends, which may lie
/// past `e` for tokens with dots or base64 bytes in them.
pub(super) fn classify(t: &[u8], s: usize, e: usize) -> Option<(&'static str, usize)> {
    let run = &t[s..e];
    let next = t.get(e).copied();
    if next == Some(b'.') {
        if let Some(found) = dotted(t, s, e) {
            return Some(found);
        }
    } else if next == Some(b':')
        && (5..=19).contains(&run.len())
        && let Some(end) = telegram(t, s, e)
    {
        return Some(("telegram-bot-token", end));
    }
    if run.len() < 12 {
        return None;
    }
    for rule in rules_for(run[0]) {
        // Every prefix has two bytes or more: the second one rules most out.
        if run[1] != rule.prefix[1] || !run.starts_with(rule.prefix) {
            continue;
        }
        let mut end = e;
        if rule.flags & B64_TAIL != 0 {
            while end < t.len() && is_b64(t[end]) {
                end += 1;
            }
        }
        let body = &t[s + rule.prefix.len()..end];
        let body_ok = if rule.flags & B64_TAIL != 0 { body.iter().all(|&b| is_b64(b)) } else { rule.set.all(body) };
        let low_variety = match rule.set {
            Set::Hex | Set::HexLower => is_low_variety_hex(body),
            _ => is_low_variety(body),
        };
        if !body_ok || body.len() < rule.min || body.len() > rule.max || low_variety {
            continue;
        }
        if rule.flags & MIXED != 0 {
            // Letters and digits, or letters whose case flips as often as a
            // random draw's does or that do not read as words (about 1 in 30
            // random 20-character bodies has no digit; a CamelCase word flips
            // once per word).
            let m = Mix::of(body);
            let random_letters = m.case_flips * 4 >= body.len() || !reads_as_words(body);
            if m.letters() == 0 || (m.digit == 0 && !random_letters) {
                continue;
            }
        }
        if rule.flags & DOT_TAIL != 0 {
            // `glpat-<body>.01.<crc>`: up to two short dotted parts.
            for _ in 0..2 {
                if t.get(end) != Some(&b'.') {
                    break;
                }
                let tail = run_end(t, end + 1);
                if !(2..=16).contains(&(tail - end - 1)) {
                    break;
                }
                end = tail;
            }
        }
        return Some((rule.kind, end));
    }
    None
}

/// Tokens whose first run ends in a dot: JWTs, Discord bot tokens, and the
/// dotted vendor formats (`hvs.`, `SG.`, `dp.pt.`, `ya29.`).
fn dotted(t: &[u8], s: usize, e: usize) -> Option<(&'static str, usize)> {
    let run = &t[s..e];
    match run {
        b"hvs" | b"hvb" => {
            let end = run_end(t, e + 1);
            return (end - e > 90).then_some(("vault-token", end));
        }
        b"ya29" => {
            let end = run_end(t, e + 1);
            return (end - e > 30).then_some(("google-oauth-token", end));
        }
        b"SG" => {
            let a = run_end(t, e + 1);
            if a - e - 1 == 22 && t.get(a) == Some(&b'.') {
                let b = run_end(t, a + 1);
                return (b - a - 1 == 43).then_some(("sendgrid-key", b));
            }
            return None;
        }
        b"dp" => {
            if t[e..].starts_with(b".pt.") {
                let end = run_end(t, e + 4);
                return (end - e - 4 >= 40).then_some(("doppler-token", end));
            }
            return None;
        }
        _ => {}
    }
    if run.starts_with(b"eyJ") && run.len() >= 10 {
        return jwt(t, s, e).map(|end| ("jwt", end));
    }
    if (23..=28).contains(&run.len()) && matches!(run[0], b'M' | b'N' | b'O') {
        return discord_bot_token(t, s, e).map(|end| ("discord-bot-token", end));
    }
    None
}

/// A JWT (JWS compact form): `header.payload.signature`, where the header
/// decodes to a JSON object naming an `alg`. The signature may be empty
/// (`alg: none`).
fn jwt(t: &[u8], s: usize, e: usize) -> Option<usize> {
    let mut header = [0u8; 192];
    let n = b64_decode(&t[s..e], &mut header)?;
    let header = &header[..n];
    if header.first() != Some(&b'{') || !super::shape::contains(header, b"\"alg\"") {
        return None;
    }
    let p_end = run_end(t, e + 1);
    if p_end - e - 1 < 2 || t.get(p_end) != Some(&b'.') {
        return None;
    }
    Some(run_end(t, p_end + 1))
}

/// A Discord bot token: base64 of the bot's snowflake, a 6–7 byte
/// timestamp, and a 27–40 byte HMAC, joined by dots.
fn discord_bot_token(t: &[u8], s: usize, e: usize) -> Option<usize> {
    let mut id = [0u8; 24];
    let n = b64_decode(&t[s..e], &mut id)?;
    if !(17..=20).contains(&n) || !id[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ts_end = run_end(t, e + 1);
    if !(6..=7).contains(&(ts_end - e - 1)) || t.get(ts_end) != Some(&b'.') {
        return None;
    }
    let end = run_end(t, ts_end + 1);
    (27..=40).contains(&(end - ts_end - 1)).then_some(end)
}

/// A Telegram bot token: the bot id, a colon and 35 bytes starting with `A`
/// (reported from `bot` on when written as `bot<token>` in a URL).
fn telegram(t: &[u8], s: usize, e: usize) -> Option<usize> {
    // In Bot API URLs the token follows `/bot`: `…/bot123456:AA…/getMe`.
    let id = t[s..e].strip_prefix(b"bot").unwrap_or(&t[s..e]);
    if id.len() < 5 || !id.iter().all(u8::is_ascii_digit) || t.get(e + 1) != Some(&b'A') {
        return None;
    }
    let end = run_end(t, e + 1);
    (end - e - 1 == 35 && !is_low_variety(&t[e + 1..end])).then_some(end)
}

/// An Azure AD (Entra ID) client secret: three bytes, a digit, `Q~`, then
/// 31–34 bytes. Called when a run ends right before a `~`; returns the
/// secret's range.
pub(super) fn azure_ad_secret(t: &[u8], e: usize) -> Option<(usize, usize)> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b'-');
    if e < 5 || t[e - 1] != b'Q' || !t[e - 2].is_ascii_digit() {
        return None;
    }
    let start = e - 5;
    let head_ok = t[start..e - 2].iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.'));
    if !head_ok || (start > 0 && allowed(t[start - 1])) {
        return None;
    }
    let mut end = e + 1;
    while end < t.len() && allowed(t[end]) && end - e <= 36 {
        end += 1;
    }
    // A sentence may end right after the secret.
    while end - e - 1 > 34 && t[end - 1] == b'.' {
        end -= 1;
    }
    let body = &t[e + 1..end];
    ((31..=34).contains(&body.len()) && !is_low_variety(body)).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(s: &str) -> Option<&'static str> {
        let t = s.as_bytes();
        let e = run_end(t, 0);
        classify(t, 0, e).filter(|&(_, end)| end == t.len()).map(|(k, _)| k)
    }

    #[test]
    fn prefixed_formats() {
        let body36 = "FAKE0123456789abcdefghijklmnopqrstuv";
        assert_eq!(kind_of(&format!("ghp_{body36}")), Some("github-token"));
        assert_eq!(kind_of(&format!("npm_{body36}")), Some("npm-token"));
        assert_eq!(kind_of("AKIAFAKEEXAMPLE12345"), Some("aws-access-key-id"));
        assert_eq!(kind_of("AKIAFAKEEXAMPLE123456"), None, "one byte too long");
        assert_eq!(kind_of("sk-learn-estimator-compatibility-layer"), None);
        assert_eq!(kind_of("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), None); // fake, made-up token
    }

    #[test]
    fn dotted_formats() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"FAKE"} . signature
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJGQUtFIn0.FAKEsig_0123456789abcdef";
        assert_eq!(kind_of(jwt), Some("jwt"));
        // The first part decodes to "123456789012345678".
        let discord = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GFAKE1.FAKEhmac0123456789abcdefghijkl";
        assert_eq!(kind_of(discord), Some("discord-bot-token"));
        assert_eq!(kind_of("MTIzNDU2Nzg5MDEyMzQ1Njc4.notadiscordtoken"), None);
    }

    #[test]
    fn run_end_agrees_with_the_byte_table() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut t = *b"aZ09_-xyaZ09_-xy";
                t[at] = b;
                let slow = t.iter().position(|&c| !is_tok(c)).unwrap_or(t.len());
                assert_eq!(run_end(&t, 0), slow, "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn telegram_and_azure() {
        let tg = "123456789:AAFAKE0123456789abcdefghijklmnopqrs";
        assert_eq!(kind_of(tg), Some("telegram-bot-token"));
        let az = "x  abc8Q~FAKE0123456789abcdefghijklmnopq ";
        let e = az.find('~').unwrap();
        assert_eq!(azure_ad_secret(az.as_bytes(), e), Some((3, az.len() - 1)));
    }
}
