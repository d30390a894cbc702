//! Secret redaction against a labelled corpus, properties that must hold
//! on any input, and pathological inputs.
//!
//! The corpus is generated from fixed seeds (`fixtures/redaction/corpus.rs`)
//! plus hand-picked cases (`fixtures/redaction/cases.jsonl`, also readable
//! from TypeScript). Run with `--nocapture` to see recall and the
//! false-positive rate.

#[path = "fixtures/redaction/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;

use corpus::Case;
use omp_discord_core::redact::{Finding, Redactor, find_secrets, redact_text};
use proptest::prelude::*;

const POSITIVE_SEED: u64 = 0x5EC2_E75A_0001;
const NEGATIVE_SEED: u64 = 0x5EC2_E75A_0002;

/// Recall and false positives over a set of cases.
#[derive(Default)]
struct Score {
    secrets: usize,
    found: usize,
    negatives: usize,
    flagged: usize,
    /// Findings in positive cases that touch no labelled secret.
    stray: usize,
    misses: BTreeMap<&'static str, usize>,
    examples: Vec<String>,
}

impl Score {
    fn recall(&self) -> f64 {
        self.found as f64 / self.secrets.max(1) as f64
    }

    fn false_positive_rate(&self) -> f64 {
        self.flagged as f64 / self.negatives.max(1) as f64
    }
}

/// Byte ranges of every occurrence of `value` in `text`.
fn occurrences(text: &str, value: &str) -> Vec<(usize, usize)> {
    text.match_indices(value).map(|(i, v)| (i, i + v.len())).collect()
}

fn covered(findings: &[Finding], (start, end): (usize, usize)) -> bool {
    findings.iter().any(|f| f.start <= start && f.end >= end)
}

fn score(cases: &[Case]) -> Score {
    let mut s = Score::default();
    for case in cases {
        let findings = find_secrets(&case.text);
        if case.secrets.is_empty() {
            s.negatives += 1;
            if !findings.is_empty() {
                s.flagged += 1;
                if s.examples.len() < 10 {
                    let f = &findings[0];
                    s.examples.push(format!("FP {} in {:?}", f.kind, case.text));
                }
            }
            continue;
        }
        let mut labelled = Vec::new();
        for (kind, value) in &case.secrets {
            let spots = occurrences(&case.text, value);
            assert!(!spots.is_empty(), "corpus bug: {value:?} not in {:?}", case.text);
            s.secrets += 1;
            if spots.iter().all(|&spot| covered(&findings, spot)) {
                s.found += 1;
            } else {
                *s.misses.entry(kind).or_default() += 1;
                if s.examples.len() < 10 {
                    s.examples.push(format!("MISS {kind} {value:?} in {:?}", case.text));
                }
            }
            labelled.extend(spots);
        }
        s.stray += findings.iter().filter(|f| !labelled.iter().any(|&(a, b)| f.start < b && a < f.end)).count();
    }
    s
}

#[derive(serde::Deserialize)]
struct FixtureCase {
    note: String,
    text: String,
    secrets: Vec<FixtureSecret>,
}

#[derive(serde::Deserialize)]
struct FixtureSecret {
    kind: String,
    value: String,
}

fn fixture_cases() -> Vec<(String, Case)> {
    include_str!("fixtures/redaction/cases.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let c: FixtureCase = serde_json::from_str(line).expect("valid fixture line");
            let secrets = c.secrets.into_iter().map(|s| (&*s.kind.leak(), s.value)).collect();
            (c.note, Case { text: c.text, secrets })
        })
        .collect()
}

/// The full corpus: generated positives and near-misses, and the fixtures.
fn corpus() -> Vec<Case> {
    let mut cases = corpus::positives(POSITIVE_SEED, 40);
    cases.extend(corpus::negatives(NEGATIVE_SEED, 4000));
    cases.extend(fixture_cases().into_iter().map(|(_, c)| c));
    cases
}

#[test]
fn corpus_recall_and_false_positive_rate() {
    let cases = corpus();
    let s = score(&cases);
    println!("redaction corpus: {} cases, {} secrets, {} near-misses", cases.len(), s.secrets, s.negatives);
    println!(
        "recall {:.4} ({}/{}), false-positive rate {:.4} ({}/{}), stray findings in positives {}",
        s.recall(),
        s.found,
        s.secrets,
        s.false_positive_rate(),
        s.flagged,
        s.negatives,
        s.stray
    );
    for e in &s.examples {
        println!("  {e}");
    }
    if !s.misses.is_empty() {
        println!("  misses by kind: {:?}", s.misses);
    }
    assert!(s.recall() >= 0.98, "recall {:.4} < 0.98", s.recall());
    assert!(s.false_positive_rate() <= 0.01, "false-positive rate {:.4} > 0.01", s.false_positive_rate());
}

#[test]
fn every_hand_picked_case_passes() {
    for (note, case) in fixture_cases() {
        let s = score(std::slice::from_ref(&case));
        assert_eq!(s.found, s.secrets, "{note}: missed a secret in {:?}", case.text);
        assert_eq!(s.flagged, 0, "{note}: false positive in {:?}", case.text);
        assert_eq!(s.stray, 0, "{note}: stray finding in {:?}", case.text);
    }
}

#[test]
fn every_generated_format_is_found() {
    let mut rng = corpus::Rng::new(7);
    for &kind in corpus::TOKEN_KINDS {
        for _ in 0..200 {
            let token = corpus::token(&mut rng, kind);
            let text = format!("x {token} y");
            let f = find_secrets(&text);
            assert!(f.len() == 1 && f[0].start == 2 && f[0].end == 2 + token.len(), "{kind}: {token:?} gave {f:?}");
        }
    }
}

/// Checks every invariant of the redaction API on one input.
fn check_invariants(text: &str) {
    for redactor in [Redactor::new(), Redactor::conservative()] {
        let findings = redactor.find(text);
        let mut last = 0;
        let mut expected = String::new();
        for f in &findings {
            assert!(f.start >= last && f.start < f.end && f.end <= text.len(), "{findings:?}");
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            expected.push_str(&text[last..f.start]);
            expected.push_str(&format!("[REDACTED:{}]", f.kind));
            last = f.end;
        }
        expected.push_str(&text[last..]);
        let out = redactor.redact(text);
        // Text outside the findings is unchanged.
        assert_eq!(out.text, expected);
        assert_eq!(out.report.count, findings.len());
        // Redacting again changes nothing.
        let again = redactor.redact(&out.text);
        assert_eq!(again.text, out.text, "not idempotent on {text:?}");
        // No found secret survives anywhere in the output.
        for f in &findings {
            let secret = &text[f.start..f.end];
            assert!(!out.text.contains(secret), "{secret:?} survives in {:?}", out.text);
        }
    }
}

/// Pieces that make rule-shaped inputs likelier than random bytes do.
fn fragment() -> impl Strategy<Value = String> {
    let mut rng = corpus::Rng::new(99);
    let mut pieces: Vec<String> = corpus::TOKEN_KINDS.iter().map(|k| corpus::token(&mut rng, k)).collect();
    pieces.extend(
        [
            "password",
            "PASSWORD",
            "token",
            "api_key",
            "Authorization",
            "Bearer ",
            "Basic ",
            "Bot ",
            "=",
            ": ",
            ":",
            "\"",
            "'",
            "`",
            "\\\"",
            "://",
            "@",
            "/",
            "~",
            ".",
            "-",
            "_",
            " ",
            "\n",
            "\t",
            ";",
            "&",
            "<",
            ">",
            "</",
            "--",
            "--password ",
            "-----BEGIN ",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            "PRIVATE KEY",
            "-----",
            "eyJhbGciOiJIUzI1NiJ9",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4",
            "/webhooks/",
            "123456789012345678",
            "hooks.slack.com/services/",
            "T0FAKE/B0FAKE/",
            "Q~",
            "8Q~",
            "${X}",
            "[REDACTED:x]",
            "é",
            "日本",
            "\u{0}",
            "ghp_",
            "sk-",
            "AKIA",
            "xoxb-",
            "postgres://u:",
            "hunter22",
            "FAKEq8ZK2mVx0pLr7TyN4bWs",
        ]
        .map(String::from),
    );
    prop_oneof![
        3 => proptest::sample::select(pieces),
        1 => "[A-Za-z0-9_\\-+/=.]{0,40}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn invariants_hold_on_arbitrary_text(text in any::<String>()) {
        check_invariants(&text);
    }

    #[test]
    fn invariants_hold_on_rule_shaped_text(parts in prop::collection::vec(fragment(), 0..24)) {
        check_invariants(&parts.concat());
    }
}

#[test]
fn invariants_hold_on_the_corpus() {
    for case in corpus() {
        check_invariants(&case.text);
    }
}

/// Inputs built to defeat look-ahead: each must take about as long as a
/// plain megabyte. The bound is loose (a quadratic scan would take minutes);
/// throughput is measured by `examples/redact_bench.rs`, not here.
#[test]
fn adversarial_megabyte_inputs_stay_linear() {
    const MB: usize = 1 << 20;
    let repeat = |unit: &str| unit.repeat(MB / unit.len() + 1);
    let inputs = [
        ("plain", repeat("lorem ipsum dolor sit amet ")),
        ("one long run", "a".repeat(MB)),
        ("begin without end", repeat("-----BEGIN RSA PRIVATE KEY-----\n")),
        ("begin with far end", format!("{}-----END", repeat("-----BEGIN PRIVATE KEY----- "))),
        ("unclosed quotes", repeat("password=\"")),
        ("keys without values", repeat("token=")),
        ("nested keys", repeat("password=password=")),
        ("url without at", repeat("https://user:pass")),
        ("colons", repeat(":")),
        ("slashes", repeat("://")),
        ("dots", repeat("eyJhbGciOiJIUzI1NiJ9.")),
        ("discord-ish", repeat("MTIzNDU2Nzg5MDEyMzQ1Njc4.")),
        ("bearer", repeat("Bearer ")),
        ("authorization", repeat("Authorization: Bearer ")),
        ("escaped quotes", repeat("secret: \\\"")),
        ("tildes", repeat("ab8Q~")),
        ("webhook ids", repeat("/webhooks/123456789012345678/")),
        ("many secrets", repeat("password=FAKEpw9x7 ")),
        ("many distinct secrets", (0..40_000).map(|i| format!("token=FAKE{i:08}abcdefgh\n")).collect()),
    ];
    for (name, input) in &inputs {
        let start = std::time::Instant::now();
        let out = redact_text(input);
        let elapsed = start.elapsed();
        println!("{name:>24}: {} bytes in {elapsed:?} -> {} bytes", input.len(), out.len());
        // Debug builds on a loaded 2-core machine take up to ~5 s for the worst
        // of these; a quadratic scan of a megabyte takes many minutes.
        assert!(elapsed.as_secs() < 60, "{name} took {elapsed:?}");
    }
}
