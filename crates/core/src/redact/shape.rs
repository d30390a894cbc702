//! Byte classes and the cheap statistics that tell a secret from a word:
//! character sets, Shannon entropy, character-class mix, base64 decoding and
//! placeholder detection. Everything here works on ASCII bytes and never
//! allocates.

use super::words::is_name_in_words;

/// Bit flags of the byte-class table.
const TOK: u8 = 1; // [A-Za-z0-9_-]: the bytes a candidate token run is made of
const B64: u8 = 2; // [A-Za-z0-9+/=_-]: standard and URL-safe base64
const USERINFO: u8 = 4; // RFC 3986 userinfo bytes, plus '@' (scanned up to the last one)

const fn build_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alnum = c.is_ascii_alphanumeric();
        if alnum || c == b'_' || c == b'-' {
            t[b] |= TOK;
        }
        if alnum || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-') {
            t[b] |= B64;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    // Not allowed unencoded, but people paste passwords
                    // into URLs as they are. (`[` stays out: it starts an
                    // IPv6 host, and a `[REDACTED:…]` that is already there.)
                    | b'#'
                    | b'?'
                    | b'^'
                    | b'{'
                    | b'}'
                    | b'<'
                    | b'>'
                    | b'|'
            )
        {
            t[b] |= USERINFO;
        }
        b += 1;
    }
    t
}

static TABLE: [u8; 256] = build_table();

/// Whether `b` can be part of a candidate token run (`[A-Za-z0-9_-]`).
#[inline(always)]
pub(super) fn is_tok(b: u8) -> bool {
    TABLE[b as usize] & TOK != 0
}

/// Whether `b` is a base64 byte of either alphabet (`[A-Za-z0-9+/=_-]`).
#[inline]
pub(super) fn is_b64(b: u8) -> bool {
    TABLE[b as usize] & B64 != 0
}

/// Whether `b` may appear in the userinfo of a URL (or is the `@` that ends it).
#[inline]
pub(super) fn is_userinfo(b: u8) -> bool {
    TABLE[b as usize] & USERINFO != 0
}

/// The alphabets that token bodies are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Set {
    /// `[A-Za-z0-9]`
    Alnum,
    /// `[A-Za-z0-9_]`
    Word,
    /// `[A-Za-z0-9_-]`
    B64Url,
    /// `[0-9a-fA-F]`
    Hex,
    /// `[0-9a-f]`
    HexLower,
    /// `[A-Z0-9]`
    UpperAlnum,
}

impl Set {
    #[inline]
    pub(super) fn contains(self, b: u8) -> bool {
        match self {
            Set::Alnum => b.is_ascii_alphanumeric(),
            Set::Word => b.is_ascii_alphanumeric() || b == b'_',
            Set::B64Url => is_tok(b),
            Set::Hex => b.is_ascii_hexdigit(),
            Set::HexLower => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            Set::UpperAlnum => b.is_ascii_uppercase() || b.is_ascii_digit(),
        }
    }

    pub(super) fn all(self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.contains(b))
    }
}

/// Which character classes a value uses, and how often the case flips.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Mix {
    pub(super) lower: usize,
    pub(super) upper: usize,
    pub(super) digit: usize,
    /// Bytes that are neither alphanumeric nor a separator (`-`, `_`, `.`).
    pub(super) symbol: usize,
    pub(super) space: usize,
    /// Changes between lower and upper case from one letter to the next.
    pub(super) case_flips: usize,
}

impl Mix {
    pub(super) fn of(bytes: &[u8]) -> Mix {
        let mut m = Mix::default();
        let mut last_case = 0u8; // 0 none, 1 lower, 2 upper
        for &b in bytes {
            let case = if b.is_ascii_lowercase() {
                m.lower += 1;
                1
            } else if b.is_ascii_uppercase() {
                m.upper += 1;
                2
            } else {
                if b.is_ascii_digit() {
                    m.digit += 1;
                } else if b.is_ascii_whitespace() {
                    m.space += 1;
                } else if !matches!(b, b'-' | b'_' | b'.') {
                    m.symbol += 1;
                }
                0
            };
            if case != 0 {
                if last_case != 0 && case != last_case {
                    m.case_flips += 1;
                }
                last_case = case;
            }
        }
        m
    }

    pub(super) fn letters(&self) -> usize {
        self.lower + self.upper
    }

    /// Whether upper and lower case are mixed the way random text mixes
    /// them, not the way `camelCase` words do (a capital every few letters).
    /// Capitals may outnumber small letters by any amount: identifiers that
    /// do and still flip case three times (`HTTPMethodNotGET`) are rare.
    pub(super) fn random_case(&self) -> bool {
        self.case_flips >= 3 && self.upper * 3 >= self.lower
    }
}

/// Shannon entropy of `bytes` in bits per byte.
pub(super) fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let len = bytes.len() as f64;
    let mut h = 0.0;
    for &c in counts.iter().filter(|&&c| c != 0) {
        let p = f64::from(c) / len;
        h -= p * p.log2();
    }
    h
}

/// Number of distinct bytes in `bytes`.
pub(super) fn distinct(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    let mut n = 0;
    for &b in bytes {
        if !seen[b as usize] {
            seen[b as usize] = true;
            n += 1;
        }
    }
    n
}

/// Whether a token body is too regular to be a real secret (`xxxx…`,
/// `0000…`, `abab…`): fewer distinct bytes than a random string of its
/// length would all but certainly have.
pub(super) fn is_low_variety(body: &[u8]) -> bool {
    let need = (body.len() / 3).clamp(3, 10);
    distinct(body) < need
}

/// [`is_low_variety`] for hex, whose 16 digits leave a random 32-digit
/// token with 9 distinct ones now and then: a quarter of the length, at
/// most 8 (`deadbeef…` has 5).
pub(super) fn is_low_variety_hex(body: &[u8]) -> bool {
    distinct(body) < (body.len() / 4).clamp(3, 8)
}

fn b64_value(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// Decodes unpadded base64 (either alphabet) into `out`, returning the
/// number of bytes written, or `None` on a byte outside the alphabet. Input
/// beyond what `out` can hold is ignored.
pub(super) fn b64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &b in input {
        if b == b'=' {
            break;
        }
        acc = (acc << 6) | u32::from(b64_value(b)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if n == out.len() {
                return Some(n);
            }
            // Truncation keeps the low byte, which is exactly the decoded one.
            out[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    Some(n)
}

/// `xxxx` masking a secret (`sk-xxxx`, an AWS key id of 16 `X`): a run of
/// four or more `x` of one case that is a word of its own or makes a third
/// of the value. Random letters hold such a run now and then, inside a word
/// or in mixed case (`XXxx`).
fn is_x_mask(v: &[u8]) -> bool {
    let xs = v.iter().filter(|b| b.eq_ignore_ascii_case(&b'x')).count();
    let mut i = 0;
    while i < v.len() {
        let run = v[i..].iter().take_while(|&&b| b == v[i] && b.eq_ignore_ascii_case(&b'x')).count();
        if run >= 4 {
            let alone = (i == 0 || !v[i - 1].is_ascii_alphanumeric())
                && v.get(i + run).is_none_or(|b| !b.is_ascii_alphanumeric());
            if alone || xs * 3 >= v.len() {
                return true;
            }
        }
        i += run.max(1);
    }
    false
}

/// A Windows variable's name between `%`: words (`APPDATA`, `Path`) or
/// capitals, digits and `_` (`PROGRAM_FILES_X86`).
fn is_env_name(name: &[u8]) -> bool {
    is_name_in_words(name) || name.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Words that stand in for a secret in docs, templates and examples.
const PLACEHOLDER_WORDS: &[&[u8]] = &[
    b"admin",
    b"changeit",
    b"changeme",
    b"change-me",
    b"change_me",
    b"default",
    b"disabled",
    b"dummy",
    b"empty",
    b"example",
    b"false",
    b"hidden",
    b"masked",
    b"nil",
    b"none",
    b"null",
    b"optional",
    b"pass",
    b"passwd",
    b"password",
    b"placeholder",
    b"redacted",
    b"required",
    b"sample",
    b"secret",
    b"string",
    b"tbd",
    b"todo",
    b"token",
    b"true",
    b"undefined",
    b"unset",
    b"value",
];

/// Whether `v` is a placeholder rather than a secret: template syntax
/// (`${X}`, `$X`, `{{x}}`, `<x>`, `%s`), masks (`***`, `xxxx`, `...`),
/// already-redacted text, or a stand-in word (`changeme`, `your-token`).
pub(super) fn is_placeholder(v: &[u8]) -> bool {
    let Some(&first) = v.first() else {
        return true;
    };
    let last = v[v.len() - 1];
    let rest = &v[1..];
    let name_like = |r: &[u8]| r.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    let template = match first {
        // `${X}`, `$(cmd)`, `$X`: shell and env expansion.
        b'$' => rest.first().is_some_and(|&b| b == b'{' || b == b'(') || name_like(rest),
        // `%s`, `%(name)s`, `%APPDATA%`.
        // (Past `v.len() <= 3`, `rest` holds the name and the closing `%`.)
        b'%' => v.len() <= 3 || rest.first() == Some(&b'(') || (last == b'%' && is_env_name(&rest[..rest.len() - 1])),
        // `<your-token>`; `[REDACTED…]`, `[…]`; `{…}`, `{{ x }}`.
        b'<' => last == b'>',
        b'[' | b'{' => true,
        // YAML tags, anchors and aliases (`!vault`, `&default`, `*default`),
        // named in words: `*cMFJmktiJ` and `!ltAUZjoBPe` are passwords.
        b'!' | b'&' | b'*' => is_name_in_words(rest) && !Mix::of(rest).random_case(),
        // YAML block scalars.
        b'|' | b'>' => v.len() <= 2,
        b'@' => last == b'@',
        _ => false,
    };
    if template {
        return true;
    }
    if v.windows(2).any(|w| w == b"${" || w == b"{{" || w == b"}}")
        || is_x_mask(v)
        || contains(v, b"****")
        || contains(v, b"...")
        || contains(v, b"\xe2\x80\xa6")
        || contains(v, b"REDACTED")
        || contains(v, b"<redacted>")
    {
        return true;
    }
    if distinct(v) <= 2 {
        return true;
    }
    let mut lower = [0u8; 32];
    if v.len() <= lower.len() {
        let lower = &mut lower[..v.len()];
        lower.copy_from_slice(v);
        lower.make_ascii_lowercase();
        if PLACEHOLDER_WORDS.contains(&&*lower) {
            return true;
        }
        // `your_api_key` and `my-token` stand in for a value; random text
        // after `my_` is one.
        for stem in [&b"your"[..], b"my-", b"my_", b"insert", b"replace", b"enter-", b"enter_"] {
            if lower.starts_with(stem) && (v.len() == stem.len() || is_name_in_words(&v[stem.len()..])) {
                return true;
            }
        }
        for tail in [&b"-here"[..], b"_here", b"-goes-here"] {
            if lower.ends_with(tail) {
                return true;
            }
        }
    }
    false
}

/// Case-sensitive substring test.
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// ASCII case-insensitive substring test.
pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_orders_random_above_regular() {
        assert!(entropy(b"aaaaaaaa") < 0.01);
        assert!((entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert!(entropy(b"q8ZK2mVx0pLr7TyN4bWs") > 4.0);
    }

    #[test]
    fn base64_decodes_both_alphabets() {
        let mut out = [0u8; 16];
        let n = b64_decode(b"eyJhbGciOiJIUzI1NiJ9", &mut out).unwrap();
        assert_eq!(&out[..n], br#"{"alg":"HS256"}"#);
        let n = b64_decode(b"-_-_", &mut out).unwrap();
        assert_eq!(&out[..n], &[0xfb, 0xff, 0xbf]);
        assert_eq!(b64_decode(b"a.b", &mut out), None);
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "${TOKEN}",
            "$GITHUB_TOKEN",
            "<your-token>",
            "{{ secrets.X }}",
            "xxxxxxxxxxxx",
            "XXXX-XXXX",
            "********",
            "changeme",
            "your_api_key_here",
            "[REDACTED:github-token]",
            "null",
            "%s",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        for s in ["hunter2!x", "q8ZK2mVx0pLr7TyN4bWs", "FAKEpass123"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn mix_counts_classes_and_case_flips() {
        let m = Mix::of(b"aB3-x+Y");
        assert_eq!((m.lower, m.upper, m.digit, m.symbol), (2, 2, 1, 1));
        assert_eq!(m.case_flips, 3);
    }
}
