//! The single linear pass over the text.
//!
//! The scanner walks the bytes once. Runs of token bytes (`[A-Za-z0-9_-]`)
//! are candidates: each is classified by its first bytes, its shape and its
//! neighbours ([`super::rules`]). `=`, `:` and `>` are checked for a
//! preceding key that names a secret ([`super::assign`]), and `://` for
//! credentials in a URL. A PEM header starts a search for its end.
//!
//! Linear time on any input: every look-ahead either is bounded by a small
//! constant, or ends in a finding that the scan then skips, or (the PEM end
//! marker) is cached so that the text after it is searched once.

use memchr::memmem;

use super::Finding;
use super::assign::{KeyClass, classify_key, is_random_looking, looks_secret};
use super::rules::{azure_ad_secret, classify, run_end};
use super::shape::{Mix, Set, b64_decode, contains, entropy, is_b64, is_placeholder, is_tok, is_userinfo};
use super::words::reads_as_words;

/// Longest value read after a key; longer values are not considered.
const MAX_VALUE: usize = 1024;
/// Longest private-key block looked for between BEGIN and END.
const MAX_PEM: usize = 64 * 1024;

/// Scanner state for one text.
pub(super) struct Scanner<'t> {
    text: &'t str,
    t: &'t [u8],
    /// Findings so far, in order and without overlaps.
    pub(super) out: Vec<Finding>,
    /// End of the last finding.
    end: usize,
    /// Cached search for `-----END`: where the search started, and the
    /// first match at or after it.
    pem_end: Option<(usize, Option<usize>)>,
    /// The last bare value scanned: no value end lies in `from..to`.
    bare_value: (usize, usize),
    high_entropy: bool,
}

impl<'t> Scanner<'t> {
    pub(super) fn new(text: &'t str, high_entropy: bool) -> Self {
        Scanner { text, t: text.as_bytes(), out: Vec::new(), end: 0, pem_end: None, bare_value: (0, 0), high_entropy }
    }

    /// Runs the pass.
    pub(super) fn scan(&mut self) {
        let t = self.t;
        let n = t.len();
        let mut i = 0;
        // The last run of token bytes: the key candidate for an operator.
        let mut prev = (0usize, 0usize);
        while i < n {
            let b = t[i];
            if is_tok(b) {
                let s = i;
                i = run_end(t, i + 1);
                let resume = self.on_run(s, i);
                // A redacted run is no key: after redaction the operator
                // would follow `]`, so it must not count as one now either
                // (redacting twice changes nothing).
                prev = if self.end > s { (0, 0) } else { (s, i) };
                if resume > i {
                    i = resume;
                }
                continue;
            }
            if matches!(b, b'=' | b':' | b'>')
                && let Some(resume) = self.on_operator(i, prev)
            {
                i = resume.max(i + 1);
                continue;
            }
            i += 1;
        }
    }

    fn push(&mut self, mut start: usize, mut end: usize, kind: &'static str) {
        if start < self.end || start >= end {
            return;
        }
        // Every boundary the rules produce is an ASCII byte or the end of the
        // text; this keeps slicing safe should a rule ever stop elsewhere.
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        self.out.push(Finding { kind, start, end });
        self.end = end;
    }

    /// A maximal run `t[s..e]` of token bytes. Returns where to resume.
    fn on_run(&mut self, s: usize, e: usize) -> usize {
        let t = self.t;
        let len = e - s;
        let next = t.get(e).copied();
        if next == Some(b'~')
            && let Some((a, z)) = azure_ad_secret(t, e)
        {
            self.push(a, z, "azure-ad-client-secret");
            return z;
        }
        if len < 2 {
            return e;
        }
        // `classify` finds nothing in a run shorter than 12 bytes unless a
        // dot or a colon follows it: most words skip the call.
        if (len >= 12 || next == Some(b'.') || next == Some(b':'))
            && let Some((kind, end)) = classify(t, s, e)
        {
            self.push(s, end, kind);
            return end;
        }
        if next == Some(b' ') {
            if len >= 10 && t[e - 1] == b'N' && t[s..e].ends_with(b"-----BEGIN") {
                let begin = e - 10;
                if begin > s {
                    // Once the key is redacted, the bytes before its marker
                    // form a run of their own: classify them as such now.
                    if let Some((kind, end)) = classify(&t[..begin], s, begin) {
                        self.push(s, end, kind);
                    } else {
                        self.high_entropy_run(s, begin);
                    }
                }
                return self.pem(begin).max(e);
            }
            if len == 6 && (&t[s..e] == b"Bearer" || &t[s..e] == b"bearer") {
                return self.bearer(e).unwrap_or(e);
            }
            if len >= 5
                && t[s] == b'-'
                && t[s + 1] == b'-'
                && let Some(class) = classify_key(&t[s + 2..e])
            {
                return self.flag_value(class, &t[s + 2..e], e).unwrap_or(e);
            }
        }
        if len >= 20
            && s > 0
            && t[s - 1] == b'/'
            && let Some(kind) = webhook(t, s, e)
        {
            self.push(s, e, kind);
            return e;
        }
        self.high_entropy_run(s, e);
        e
    }

    /// In conservative mode, any long run that mixes cases and digits with
    /// high entropy.
    #[inline(always)]
    fn high_entropy_run(&mut self, s: usize, e: usize) {
        if self.high_entropy && e - s >= 24 {
            let run = &self.t[s..e];
            let m = Mix::of(run);
            if m.upper > 0 && m.lower > 0 && m.digit > 0 && entropy(run) >= 3.5 {
                self.push(s, e, "high-entropy");
            }
        }
    }

    /// An operator at `i` (`=`, `:` or `>`); `prev` is the last token run.
    /// Returns where to resume when it consumed a secret.
    fn on_operator(&mut self, i: usize, prev: (usize, usize)) -> Option<usize> {
        let t = self.t;
        let op = t[i];
        let after = t.get(i + 1).copied();
        if op == b':' && after == Some(b'/') && t.get(i + 2) == Some(&b'/') {
            return self.url_credentials(i, prev);
        }
        let mut value_at = i + 1;
        match (op, after) {
            // `a == b`, `a =~ re` compare; `KEY==x` in an env file sets `=x`.
            (b'=', Some(b'=' | b'~')) if i == 0 || matches!(t[i - 1], b' ' | b'\t') || prev.1 != i => return None,
            (b':', Some(b':')) => return None,
            (b'=', Some(b'>')) | (b':', Some(b'=')) => value_at += 1,
            _ => {}
        }
        if op == b'>' {
            // `<password>value</password>`
            if prev.1 != i || prev.0 == 0 || t[prev.0 - 1] != b'<' {
                return None;
            }
            let class = classify_key(&t[prev.0..prev.1])?;
            let lim = (i + 1 + MAX_VALUE).min(t.len());
            let close = memchr::memchr(b'<', &t[i + 1..lim])? + i + 1;
            let value = &t[i + 1..close];
            if value.contains(&b'\n') || !looks_secret(value, class, true) {
                return None;
            }
            self.push(i + 1, close, class.kind(&t[prev.0..prev.1]));
            return Some(close);
        }
        // The key ends right before the operator, after optional blanks and
        // a closing quote (possibly escaped, inside a JSON string).
        let mut j = i;
        while j > 0 && i - j < 8 && matches!(t[j - 1], b' ' | b'\t') {
            j -= 1;
        }
        if j > 0 && matches!(t[j - 1], b'"' | b'\'' | b'`') {
            j -= 1;
            if j > 0 && t[j - 1] == b'\\' {
                j -= 1;
            }
        }
        if prev.1 != j || prev.0 == prev.1 {
            return None;
        }
        let key = &t[prev.0..prev.1];
        let class = classify_key(key)?;
        if class == KeyClass::Authorization {
            return self.authorization(value_at);
        }
        let (vs, ve, quoted, resume) = self.value(value_at)?;
        self.value_secret(class, key, vs, ve, quoted, resume)
    }

    /// Decides on the value `t[vs..ve]` of a key of class `class`.
    fn value_secret(
        &mut self,
        class: KeyClass,
        key: &[u8],
        vs: usize,
        ve: usize,
        quoted: bool,
        resume: usize,
    ) -> Option<usize> {
        let t = self.t;
        if vs < ve && is_tok(t[vs]) {
            let re = run_end(t, vs);
            if let Some((kind, end)) = classify(t, vs, re) {
                self.push(vs, end, kind);
                return Some(end);
            }
        }
        if !looks_secret(&t[vs..ve], class, quoted) {
            return None;
        }
        self.push(vs, ve, class.kind(key));
        Some(resume)
    }

    /// `--password value` and the like on a command line.
    fn flag_value(&mut self, class: KeyClass, key: &[u8], e: usize) -> Option<usize> {
        if class == KeyClass::Authorization {
            return None;
        }
        let (vs, ve, quoted, resume) = self.value(e + 1)?;
        if self.t.get(vs) == Some(&b'-') {
            return None;
        }
        self.value_secret(class, key, vs, ve, quoted, resume)
    }

    /// Reads the value that starts at `p` (after blanks): a quoted string
    /// (`"…"`, `'…'`, `` `…` ``, or `\"…\"` inside JSON) or a bare word.
    /// Returns the value's range, whether it was quoted, and where to resume.
    fn value(&mut self, p: usize) -> Option<(usize, usize, bool, usize)> {
        let t = self.t;
        let n = t.len();
        let p = skip_blanks(t, p);
        let q = *t.get(p)?;
        if matches!(q, b'"' | b'\'' | b'`') {
            let vs = p + 1;
            let lim = (vs + MAX_VALUE).min(n);
            let mut k = vs;
            while k < lim {
                match t[k] {
                    c if c == q => return Some((vs, k, true, k + 1)),
                    b'\n' => return None,
                    b'\\' => k += 2,
                    _ => k += 1,
                }
            }
            None
        } else if q == b'\\' && t.get(p + 1) == Some(&b'"') {
            let vs = p + 2;
            let lim = (vs + MAX_VALUE).min(n);
            let k = vs + memchr::memchr2(b'\\', b'\n', t.get(vs..lim)?)?;
            Some((vs, k, true, k))
        } else {
            let lim = (p + MAX_VALUE).min(n);
            // Values that start inside the last bare value end where it
            // ended: reuse that scan, so `a=a=a=…` stays linear.
            let (from, to) = self.bare_value;
            let mut k = if from <= p && p < to { to } else { p };
            while k < lim && !is_value_end(t[k]) {
                k += 1;
            }
            self.bare_value = (p, k);
            if k == lim && lim != n {
                return None;
            }
            Some((p, k, false, k))
        }
    }

    /// `Authorization: <scheme> <credential>`: redacts the credential.
    fn authorization(&mut self, p: usize) -> Option<usize> {
        let t = self.t;
        let n = t.len();
        let mut p = skip_blanks(t, p);
        let mut quote = None;
        if let Some(&q) = t.get(p) {
            if matches!(q, b'"' | b'\'' | b'`') {
                quote = Some(q);
                p += 1;
            } else if q == b'\\' && t.get(p + 1) == Some(&b'"') {
                quote = Some(b'\\');
                p += 2;
            }
        }
        let word_end = run_end(t, p);
        let mut cs = p;
        let mut whole_line = false;
        if t.get(word_end) == Some(&b' ') {
            let word = &t[p..word_end];
            if is_scheme(word) {
                whole_line = word.eq_ignore_ascii_case(b"digest") || word.eq_ignore_ascii_case(b"aws4-hmac-sha256");
                cs = word_end;
                while cs < n && t[cs] == b' ' && cs - word_end < 8 {
                    cs += 1;
                }
            }
        }
        let lim = (cs + MAX_VALUE).min(n);
        let mut ce = cs;
        while ce < lim {
            let c = t[ce];
            if c == b'\n' || c == b'\r' || Some(c) == quote {
                break;
            }
            if !whole_line && (c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'`' | b',' | b';')) {
                break;
            }
            ce += 1;
        }
        let cred = &t[cs..ce];
        if cred.len() < 8 || is_placeholder(cred) {
            return None;
        }
        let m = Mix::of(cred);
        if m.digit == 0 && m.symbol == 0 && !m.random_case() && reads_as_words(cred) && !is_basic_credentials(cred) {
            return None;
        }
        let kind = if is_tok(cred[0]) {
            classify(t, cs, run_end(t, cs)).map_or("authorization", |(k, _)| k)
        } else {
            "authorization"
        };
        self.push(cs, ce, kind);
        Some(ce)
    }

    /// `Bearer <token>` without an `Authorization` key before it.
    fn bearer(&mut self, e: usize) -> Option<usize> {
        let t = self.t;
        let cs = e + 1;
        let lim = (cs + MAX_VALUE).min(t.len());
        let mut ce = cs;
        while ce < lim && (is_b64(t[ce]) || matches!(t[ce], b'.' | b'~')) {
            ce += 1;
        }
        let cred = &t[cs..ce];
        if cred.len() < 16 || is_placeholder(cred) || !is_random_looking(cred, &Mix::of(cred)) {
            return None;
        }
        let kind = classify(t, cs, run_end(t, cs)).map_or("authorization", |(k, _)| k);
        self.push(cs, ce, kind);
        Some(ce)
    }

    /// `scheme://user:password@host`: redacts the password (and a user
    /// name that is itself a known token). `i` is the `:` of `://`.
    fn url_credentials(&mut self, i: usize, prev: (usize, usize)) -> Option<usize> {
        let t = self.t;
        if prev.1 != i {
            return None;
        }
        let us = i + 3;
        let lim = (us + 512).min(t.len());
        let mut k = us;
        let mut colon = None;
        let mut at = None;
        while k < lim && is_userinfo(t[k]) {
            match t[k] {
                b':' if colon.is_none() => colon = Some(k),
                b'@' => at = Some(k),
                _ => {}
            }
            k += 1;
        }
        let at = at?;
        if us < at && is_tok(t[us]) {
            let re = run_end(t, us);
            if let Some((kind, end)) = classify(t, us, re)
                && end <= at
            {
                self.push(us, end, kind);
            }
        }
        let colon = colon.filter(|&c| c < at)?;
        let ps = colon + 1;
        let pass = &t[ps..at];
        if pass.len() < 3 || is_placeholder(pass) {
            return (self.end > us).then_some(self.end);
        }
        let kind = if is_tok(pass[0]) {
            classify(t, ps, run_end(t, ps)).filter(|&(_, end)| end == at).map_or("url-password", |(k, _)| k)
        } else {
            "url-password"
        };
        self.push(ps, at, kind);
        Some(at)
    }

    /// A PEM block starting at `start` (`-----BEGIN`). Private keys are
    /// redacted whole, up to their END line; without one (truncated output),
    /// up to the end of the base64 body. Public keys and certificates pass.
    fn pem(&mut self, start: usize) -> usize {
        let t = self.t;
        let label_start = start + 11;
        let lim = (label_start + 64).min(t.len());
        let Some(rel) = t.get(label_start..lim).and_then(|l| memmem::find(l, b"-----")) else {
            return start + 10;
        };
        let label = &t[label_start..label_start + rel];
        let label_ok = label.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
        if !label_ok || !contains(label, b"PRIVATE KEY") {
            return start + 10;
        }
        let body = label_start + rel + 5;
        let end = match self.next_pem_end(body) {
            Some(p) if p - body <= MAX_PEM => {
                let lim = (p + 80).min(t.len());
                memmem::find(&t[p + 8..lim], b"-----").map_or(lim, |r| p + 8 + r + 5)
            }
            _ => {
                let lim = (body + MAX_PEM).min(t.len());
                // Base64 lines, `Proc-Type:`-style headers and `\n` escapes,
                // up to the next marker line.
                let mut k = body;
                while k < lim
                    && (is_b64(t[k]) || t[k].is_ascii_whitespace() || matches!(t[k], b'\\' | b':' | b','))
                    && !t[k..].starts_with(b"-----")
                {
                    k += 1;
                }
                k
            }
        };
        self.push(start, end, "private-key");
        end
    }

    /// First `-----END` at or after `from`, searching each byte at most once.
    fn next_pem_end(&mut self, from: usize) -> Option<usize> {
        if let Some((searched, found)) = self.pem_end
            && from >= searched
            && found.is_none_or(|p| p >= from)
        {
            return found;
        }
        let found = memmem::find(&self.t[from..], b"-----END").map(|p| p + from);
        self.pem_end = Some((from, found));
        found
    }
}

/// Bytes that end an unquoted value.
fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(b, b'"' | b'\'' | b'`' | b',' | b';' | b'&' | b')' | b']' | b'}' | b'<' | b'>' | b'\\' | b'|')
}

/// Where a value starts after the blanks at `p` (16 at most: more is layout,
/// not a separator).
fn skip_blanks(t: &[u8], p: usize) -> usize {
    let lim = (p + 16).min(t.len());
    p + t[p.min(lim)..lim].iter().take_while(|&&b| matches!(b, b' ' | b'\t')).count()
}

/// Whether `cred` is base64 of `user:password` (HTTP Basic), whatever its
/// letters look like.
fn is_basic_credentials(cred: &[u8]) -> bool {
    let mut buf = [0u8; 192];
    if cred.len() > 256 || !cred.len().is_multiple_of(4) {
        return false;
    }
    let Some(n) = b64_decode(cred, &mut buf) else {
        return false;
    };
    let plain = &buf[..n];
    plain.iter().all(|b| b.is_ascii_graphic())
        && plain.iter().position(|&b| b == b':').is_some_and(|c| c > 0 && c + 1 < n)
}

/// HTTP authentication schemes (case-insensitive).
fn is_scheme(word: &[u8]) -> bool {
    const SCHEMES: &[&[u8]] = &[
        b"bearer",
        b"basic",
        b"bot",
        b"token",
        b"digest",
        b"negotiate",
        b"ntlm",
        b"apikey",
        b"api-key",
        b"key",
        b"hmac",
        b"splunk",
        b"ssws",
        b"aws4-hmac-sha256",
        b"oauth",
        b"jwt",
    ];
    SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s))
}

/// The secret segment of a Discord or Slack webhook URL, given the run
/// `t[s..e]` that follows a `/`.
fn webhook(t: &[u8], s: usize, e: usize) -> Option<&'static str> {
    let len = e - s;
    let back = |end: usize, ok: fn(&u8) -> bool, max: usize| {
        let mut b = end;
        while b > 0 && end - b < max && ok(&t[b - 1]) {
            b -= 1;
        }
        b
    };
    if (60..=100).contains(&len) {
        // …/webhooks/<snowflake>/<token>
        let id_end = s - 1;
        let id_start = back(id_end, u8::is_ascii_digit, 21);
        if (17..=20).contains(&(id_end - id_start)) && t[..id_start].ends_with(b"/webhooks/") {
            return Some("discord-webhook");
        }
    }
    if (20..=40).contains(&len) && Set::Alnum.all(&t[s..e]) {
        // hooks.slack.com/services/T…/B…/<secret>
        let upper = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit();
        let b_end = s - 1;
        let b_start = back(b_end, upper, 16);
        if b_start == b_end || t[b_start] != b'B' || b_start == 0 || t[b_start - 1] != b'/' {
            return None;
        }
        let t_end = b_start - 1;
        let t_start = back(t_end, upper, 16);
        if t_start < t_end && t[t_start] == b'T' && t[..t_start].ends_with(b"/services/") {
            return Some("slack-webhook");
        }
    }
    None
}
