//! Secrets known only by their context: `KEY=value`, `key: value`,
//! `"key": "value"` and `<key>value</key>` where the key names a secret.
//!
//! A key is split into lowercase words (`AWS_SECRET_ACCESS_KEY` → aws,
//! secret, access, key; `clientSecret` → client, secret) and classified. The
//! value must then look like a secret for that class: long enough, not a
//! placeholder or a reference to a variable, and random-looking (mixed
//! character classes, entropy) unless it is a quoted password.

use super::shape::{Mix, Set, contains, entropy, is_low_variety_hex, is_placeholder};
use super::words::{is_name_in_words, reads_as_words};

/// What a key says its value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyClass {
    /// `password`, `passwd`, `pwd`, `DB_PASS`, `passphrase`.
    Password,
    /// `token`, `secret`, `api_key`, `*_KEY`, `credentials`, `auth`.
    Secret,
    /// `sig` (SAS and signed-URL signatures): long values only.
    Signature,
    /// `Authorization` / `Proxy-Authorization`: a scheme and a credential.
    Authorization,
}

impl KeyClass {
    /// The kind reported for a value found under this class of key.
    pub(super) fn kind(self, key: &[u8]) -> &'static str {
        let lower_has = |w: &[u8]| super::shape::contains_ci(key, w);
        match self {
            KeyClass::Password => "password",
            KeyClass::Authorization => "authorization",
            KeyClass::Signature => "signature",
            KeyClass::Secret if lower_has(b"aws") => "aws-secret-key",
            KeyClass::Secret if lower_has(b"accountkey") || lower_has(b"sharedaccesskey") => "azure-storage-key",
            KeyClass::Secret => "generic-secret",
        }
    }
}

/// Words that make a key a password key wherever they appear in it.
const PASSWORD_WORDS: &[&[u8]] = &[b"password", b"passwd", b"passphrase", b"pwd", b"pass", b"pswd", b"passwords"];

/// Words that make a key a secret key wherever they appear in it.
const SECRET_WORDS: &[&[u8]] = &[
    b"secret",
    b"secrets",
    b"token",
    b"tokens",
    b"apikey",
    b"apikeys",
    b"credential",
    b"credentials",
    b"creds",
    b"auth",
    b"privatekey",
    b"secretkey",
    b"accesskey",
    b"authkey",
    b"accountkey",
    b"authtoken",
    b"accesstoken",
    b"refreshtoken",
    b"bearer",
];

/// Endings of keys written without separators (`PGPASSWORD`, `ACCESSTOKEN`).
const SECRET_ENDINGS: &[&[u8]] =
    &[b"token", b"secret", b"apikey", b"secretkey", b"privatekey", b"accesskey", b"accountkey"];

/// Words that make a key describe a secret rather than hold one
/// (`token_type`, `max_tokens`, `public_key`, `password_file`, `key_id`).
const STOP_WORDS: &[&[u8]] = &[
    b"alg",
    b"algorithm",
    b"audience",
    b"bits",
    b"bos",
    b"bytes",
    b"cache",
    b"completion",
    b"count",
    b"created",
    b"cursor",
    b"dir",
    b"duration",
    b"enabled",
    b"encoding",
    b"endpoint",
    b"env",
    b"eos",
    b"expires",
    b"expiration",
    b"expiry",
    b"field",
    b"file",
    b"foreign",
    b"format",
    b"group",
    b"hash",
    b"header",
    b"hint",
    b"id",
    b"ids",
    b"idempotency",
    b"index",
    b"input",
    b"issuer",
    b"kind",
    b"label",
    b"last",
    b"len",
    b"length",
    b"lifetime",
    b"limit",
    b"location",
    b"lookup",
    b"manager",
    b"mask",
    b"max",
    b"message",
    b"method",
    b"min",
    b"mode",
    b"name",
    b"names",
    b"next",
    b"output",
    b"pad",
    b"page",
    b"param",
    b"partition",
    b"path",
    b"pattern",
    b"placeholder",
    b"policy",
    b"prev",
    b"primary",
    b"prompt",
    b"provider",
    b"pub",
    b"public",
    b"range",
    b"ref",
    b"regex",
    b"required",
    b"reset",
    b"rotation",
    b"routing",
    b"row",
    b"scheme",
    b"scope",
    b"scopes",
    b"sep",
    b"shard",
    b"size",
    b"sort",
    b"source",
    b"status",
    b"store",
    b"timeout",
    b"total",
    b"ttl",
    b"type",
    b"unique",
    b"unk",
    b"updated",
    b"uri",
    b"url",
    b"usage",
    b"used",
    b"valid",
    b"version",
];

/// Longest key considered; longer runs before an `=` are data, not keys.
const MAX_KEY: usize = 64;

/// Classifies a key, or `None` when it does not name a secret.
pub(super) fn classify_key(key: &[u8]) -> Option<KeyClass> {
    if key.len() < 3 || key.len() > MAX_KEY {
        return None;
    }
    // Quick reject: every class needs one of these letters in its last word.
    let last = key[key.len() - 1].to_ascii_lowercase();
    if !matches!(last, b'y' | b's' | b't' | b'n' | b'd' | b'e' | b'h' | b'g' | b'l') {
        return None;
    }
    let mut lower = [0u8; MAX_KEY];
    // Most keys name no secret: reject them on their lowercase letters and
    // digits alone (`Authorization` has `auth`), before splitting words.
    let mut joined = 0;
    for &b in key {
        if b.is_ascii_alphanumeric() {
            lower[joined] = b | 0x20; // lowercase for letters, digits unchanged
            joined += 1;
        }
    }
    if !has_secret_stem(&lower[..joined]) {
        return None;
    }
    let mut joined = 0; // lowercase alphanumerics, separators dropped
    let mut words = [(0u8, 0u8); 12];
    let mut nwords = 0;
    let mut word_start = 0usize;
    let mut prev: u8 = 0;
    for (i, &b) in key.iter().enumerate() {
        let boundary = if !b.is_ascii_alphanumeric() {
            true
        } else if b.is_ascii_uppercase() {
            prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && key.get(i + 1).is_some_and(u8::is_ascii_lowercase))
        } else {
            false
        };
        if boundary && joined > word_start {
            if nwords < words.len() {
                words[nwords] = (word_start as u8, joined as u8);
                nwords += 1;
            }
            word_start = joined;
        }
        if b.is_ascii_alphanumeric() {
            lower[joined] = b.to_ascii_lowercase();
            joined += 1;
        }
        if !b.is_ascii_alphanumeric() {
            word_start = joined;
        }
        prev = b;
    }
    if joined > word_start && nwords < words.len() {
        words[nwords] = (word_start as u8, joined as u8);
        nwords += 1;
    }
    let whole = &lower[..joined];
    let words = &words[..nwords];
    let word = |&(a, b): &(u8, u8)| &whole[a as usize..b as usize];

    if whole.ends_with(b"authorization") {
        return Some(KeyClass::Authorization);
    }
    let class = if words.iter().any(|w| PASSWORD_WORDS.contains(&word(w)))
        || contains(whole, b"password")
        || contains(whole, b"passwd")
    {
        KeyClass::Password
    } else if words.iter().any(|w| SECRET_WORDS.contains(&word(w))) || SECRET_ENDINGS.iter().any(|e| whole.ends_with(e))
    {
        KeyClass::Secret
    } else {
        let last = word(words.last()?);
        if words.len() >= 2 && (last == b"key" || last == b"keys") {
            KeyClass::Secret
        } else if last == b"sig" {
            KeyClass::Signature
        } else {
            return None;
        }
    };
    // Checked last: only for keys that would otherwise name a secret.
    if words.iter().any(|w| STOP_WORDS.contains(&word(w))) {
        return None;
    }
    Some(class)
}

/// Whether a lowercase key contains `pass`, `pw`, `secret`, `token`, `key`,
/// `auth`, `cred`, `sig` or `bearer`.
fn has_secret_stem(whole: &[u8]) -> bool {
    // Two bytes pick the one stem that can start here.
    whole.windows(2).enumerate().any(|(i, pair)| {
        let at = &whole[i..];
        match (pair[0], pair[1]) {
            (b'p', b'w') => true,
            (b'p', b'a') => at.starts_with(b"pass"),
            (b's', b'e') => at.starts_with(b"secret"),
            (b's', b'i') => at.starts_with(b"sig"),
            (b't', b'o') => at.starts_with(b"token"),
            (b'k', b'e') => at.starts_with(b"key"),
            (b'a', b'u') => at.starts_with(b"auth"),
            (b'c', b'r') => at.starts_with(b"cred"),
            (b'b', b'e') => at.starts_with(b"bearer"),
            _ => false,
        }
    })
}

/// Whether `v` (the value of a key of class `class`) looks like a real
/// secret. `quoted` says whether it was written as a string literal.
pub(super) fn looks_secret(v: &[u8], class: KeyClass, quoted: bool) -> bool {
    let min = match class {
        KeyClass::Password => 6,
        KeyClass::Authorization => 8,
        KeyClass::Secret => 10,
        KeyClass::Signature => 20,
    };
    if v.len() < min || v.len() > 4096 || is_placeholder(v) {
        return false;
    }
    let m = Mix::of(v);
    if m.space > 0 || (m.letters() == 0 && m.symbol == 0) || is_path_or_url(v) {
        return false;
    }
    // `# note` starts a comment in YAML, TOML and shell; `#` before
    // random letters is part of a password.
    if !quoted && (is_reference(v) || (v[0] == b'#' && is_name_in_words(&v[1..]))) {
        return false;
    }
    if class == KeyClass::Password {
        // People choose passwords: they need not look random, only not like
        // words (or, quoted, a long phrase without blanks).
        let mixed = (m.digit > 0 && m.letters() > 0) || m.symbol > 0 || m.random_case();
        return mixed || !reads_as_words(v) || (quoted && (m.digit > 0 || v.len() >= 12));
    }
    is_random_looking(v, &m)
}

/// Whether a value reads as random rather than as words: mixed letters and
/// digits, frequent case changes, base64 symbols, or letters whose pairs
/// words rarely use, with enough entropy.
pub(super) fn is_random_looking(v: &[u8], m: &Mix) -> bool {
    // Random hex of 32+ digits (an API key, a session secret) may show an
    // entropy under 3 bits by chance; enough distinct digits tell it from
    // `deadbeef…`.
    if v.len() >= 32 && m.digit > 0 && m.letters() > 0 && Set::Hex.all(v) && !is_low_variety_hex(v) {
        return true;
    }
    let h = entropy(v);
    let need = if v.len() < 16 { 2.8 } else { 3.0 };
    if h < need {
        return false;
    }
    (m.digit > 0 && m.letters() > 0)
        || m.random_case()
        || (m.symbol > 0 && m.letters() > 0 && v.len() >= 16 && h >= 4.0)
        || (m.digit == 0 && m.symbol == 0 && !reads_as_words(v))
}

/// `/etc/x`, `./x`, `~/x`, `C:\x`, `https://…`: a location, not a secret.
fn is_path_or_url(v: &[u8]) -> bool {
    v.starts_with(b"./")
        || v.starts_with(b"../")
        || v.starts_with(b"~/")
        || (v.len() > 3 && v[1] == b':' && (v[2] == b'\\' || v[2] == b'/'))
        || contains(v, b"://")
        || (v[0] == b'/' && v.iter().filter(|&&b| b == b'/').count() >= 2 && !v.contains(&b'+') && !is_b64_blob(v))
}

/// A long run of base64 characters with a high entropy: an AWS secret key
/// may start with `/` and hold more, but is no path. Below 32 bytes it must
/// also mix both cases and digits, as few path names do.
fn is_b64_blob(v: &[u8]) -> bool {
    let m = Mix::of(v);
    v.len() >= 24
        && v.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b'='))
        && entropy(v) >= 4.0
        && (v.len() >= 32 || (m.upper > 0 && m.lower > 0 && m.digit > 0))
}

/// An unquoted value that names something instead of being a literal:
/// a call, an index, or a dotted path of identifiers (`os.environ`,
/// `process.env.TOKEN`, `self.secret`).
fn is_reference(v: &[u8]) -> bool {
    if v.iter().any(|&b| matches!(b, b'(' | b')' | b'[' | b']')) {
        return true;
    }
    v.contains(&b'.')
        && v.split(|&b| b == b'.').all(|seg| {
            !seg.is_empty() && seg[0].is_ascii_alphabetic() && seg.iter().all(|&b| b.is_ascii_alphabetic() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_by_their_words() {
        use KeyClass::*;
        for (key, class) in [
            ("password", Some(Password)),
            ("PGPASSWORD", Some(Password)),
            ("db_pass", Some(Password)),
            ("MYSQL_PWD", Some(Password)),
            ("GITHUB_TOKEN", Some(Secret)),
            ("apiKey", Some(Secret)),
            ("x-api-key", Some(Secret)),
            ("AWS_SECRET_ACCESS_KEY", Some(Secret)),
            ("clientSecret", Some(Secret)),
            ("_authToken", Some(Secret)),
            ("AccountKey", Some(Secret)),
            ("STRIPE_KEY", Some(Secret)),
            ("Authorization", Some(Authorization)),
            ("sig", Some(Signature)),
            ("key", None),
            ("public_key", None),
            ("token_type", None),
            ("max_tokens", None),
            ("password_file", None),
            ("access_key_id", None),
            ("monkey", None),
            ("name", None),
            ("primaryKey", None),
        ] {
            assert_eq!(classify_key(key.as_bytes()), class, "{key}");
        }
    }

    #[test]
    fn a_base64_key_starting_with_a_slash_is_no_path() {
        let key = b"/5Hva6Qmg17tfK0NaKNtH/8YrbAamnG4Uo/eYRV5"; // fake, from a proptest case
        assert!(!is_path_or_url(key));
        assert!(looks_secret(key, KeyClass::Secret, false));
        assert!(is_path_or_url(b"/usr/local/lib/node_modules"));
        assert!(is_path_or_url(b"/home/ana/.ssh/id_ed25519"));
    }

    #[test]
    fn values_must_look_secret() {
        use KeyClass::*;
        assert!(looks_secret(b"FAKEq8ZK2mVx0pLr7TyN", Secret, false));
        assert!(looks_secret(b"hunter22", Password, false));
        assert!(looks_secret(b"Tr0ub4dor&3", Password, true));
        assert!(!looks_secret(b"process.env.TOKEN", Secret, false));
        assert!(!looks_secret(b"getToken()", Secret, false));
        assert!(!looks_secret(b"accessToken", Password, false));
        assert!(!looks_secret(b"${DB_PASSWORD}", Password, true));
        assert!(!looks_secret(b"production", Secret, true));
        assert!(!looks_secret(b"1234567890", Secret, true));
        assert!(!looks_secret(b"/run/secrets/db", Password, false));
        assert!(!looks_secret(b"Please enter your password", Password, true));
        // Letters only: random ones are a secret, words are not.
        assert!(looks_secret(b"yqscUvKoyt", Password, false));
        assert!(looks_secret(b"PQIBIBGEYsEAsX", Password, true));
        assert!(looks_secret(b"mtiturfopDjyecpngbP", Secret, false));
        assert!(!looks_secret(b"refreshToken", Secret, false));
        // `#` starts a comment before words, a password before random text.
        assert!(looks_secret(b"#N=91%Bp#wVX+k%3LHgL", Password, false));
        assert!(!looks_secret(b"#TODO", Password, false));
        // A short base64 secret may start with `/`; a path does not mix like one.
        assert!(looks_secret(b"/eNF2Tf30m4geAOlsm/mmxw4WQtX", Secret, false));
        assert!(!looks_secret(b"/home/runner/work/Project1/src", Secret, false));
    }
}
