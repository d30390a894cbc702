//! Whether letters read as words (`accessToken`, `DB_PASSWORD`) or as random
//! letters (`yqscUvKoyt`), for values of secret keys that hold no digit or
//! symbol to tell them apart. Letter pairs answer it: random letters are
//! full of pairs that words rarely use.

#[path = "bigram_table.rs"]
mod bigram_table;

use bigram_table::BIGRAM_LLR;

/// Mean log-likelihood ratio per letter pair, in tenths of a bit, from which
/// letters read as words. When the table was made, this bar read 0.7 % of
/// 47,537 mixed-case identifiers (from the TypeScript declarations in this
/// repo's node_modules) as random (`Lightweight`: `tw` and `gh` are rare
/// pairs) and 1.1 % of 400,000 random letter strings as words. Only values
/// the other rules could not decide get here.
const WORDS_FROM: i32 = 0;

/// Whether `v` (letters, maybe `_`, `-`, `.` between words) reads as words.
/// Words are split at separators and case changes (`HTTPServer` is `HTTP`
/// and `Server`); letter pairs are only counted within a word. The pairs of
/// short capitals (`DB`, `HTTP`) count as neutral: acronyms need not read as
/// words, but random capitals must not outvote the rest either.
pub(super) fn reads_as_words(v: &[u8]) -> bool {
    let (mut sum, mut pairs) = (0i32, 0i32);
    for word in words(v) {
        if word.len() <= 4 && word.iter().all(u8::is_ascii_uppercase) {
            pairs += word.len() as i32 - 1;
            continue;
        }
        for pair in word.windows(2) {
            let [a, b] = [pair[0], pair[1]].map(|c| usize::from(c.to_ascii_lowercase() - b'a'));
            sum += i32::from(BIGRAM_LLR[a][b]);
            pairs += 1;
        }
    }
    sum >= WORDS_FROM * pairs
}

/// Whether `v` is a name made of words: letters, `_` and `-` only, reading
/// as words (`default`, `base_config`, `TODO`).
pub(super) fn is_name_in_words(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_alphabetic)
        && v.iter().all(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
        && reads_as_words(v)
}

/// The words of `v`: runs of letters split where `aB` or `ABc` changes case.
fn words(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i <= v.len() {
            let at = i;
            i += 1;
            let boundary = match (at.checked_sub(1).map(|p| v[p]), v.get(at)) {
                (_, None) => true,
                (_, Some(b)) if !b.is_ascii_alphabetic() => true,
                (Some(p), Some(b)) => {
                    let next_lower = v.get(at + 1).is_some_and(u8::is_ascii_lowercase);
                    (p.is_ascii_lowercase() && b.is_ascii_uppercase())
                        || (p.is_ascii_uppercase() && b.is_ascii_uppercase() && next_lower)
                }
                (None, Some(_)) => false,
            };
            if boundary {
                let word = &v[start..at];
                start = if v.get(at).is_some_and(u8::is_ascii_alphabetic) { at } else { at + 1 };
                if !word.is_empty() {
                    return Some(word);
                }
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::reads_as_words;

    #[test]
    fn identifiers_read_as_words() {
        for v in [
            "accessToken",
            "DB_PASSWORD",
            "HTTPServer",
            "getRefreshToken",
            "default",
            "base_config",
            "required",
            "ClientSecret",
            "sunshine",
        ] {
            assert!(reads_as_words(v.as_bytes()), "{v}");
        }
    }

    #[test]
    fn words_split_at_case_changes_and_separators() {
        let split: Vec<&[u8]> = super::words(b"getHTTPServer_name-x.yZ").collect();
        assert_eq!(split, [&b"get"[..], b"HTTP", b"Server", b"name", b"x", b"y", b"Z"]);
    }

    #[test]
    fn random_letters_do_not() {
        for v in ["yqscUvKoyt", "PQIBIBGEYsEAsX", "mtiturfopDjyecpngbP", "HQBVCtXqXRuVU_RWXKSU", "cMFJmktiJ", "xkcd"] {
            assert!(!reads_as_words(v.as_bytes()), "{v}");
        }
    }
}
