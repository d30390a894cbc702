//! Redaction benchmark: throughput on a realistic tool-output log, recall and
//! false positives on the labelled corpus, and a naive baseline in the same
//! run.
//!
//! ```text
//! cargo run --release -p omp-discord-core --example redact_bench -- \
//!     [--size-mb 50] [--runs 5] [--baseline-mb 5] [--chunk-kb 64] \
//!     [--write-log PATH] [--write-corpus PATH]
//! ```
//!
//! The log (~50 MB of build logs, JSON, diffs, env dumps, lockfiles, test
//! output, with fake secrets sprinkled in) is generated from a fixed seed,
//! so every run and every language sees the same bytes: `--write-log`
//! saves it for the wasm and JS RegExp measurements, `--write-corpus` saves
//! the labelled corpus as JSON lines. The naive baseline runs the rule set
//! of `tests/fixtures/redaction/baseline-patterns.json` (the same patterns a
//! JS RegExp baseline can load) as one `RegexSet` per line, then each
//! matching rule's regex on that line.

#[path = "../tests/fixtures/redaction/corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use corpus::{Case, Rng};
use omp_discord_core::redact::{Finding, Redactor, find_secrets};

const LOG_SEED: u64 = 0x10C_5EED;

struct Args {
    size_mb: usize,
    runs: usize,
    baseline_mb: usize,
    chunk_kb: usize,
    write_log: Option<String>,
    write_corpus: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args { size_mb: 50, runs: 5, baseline_mb: 5, chunk_kb: 64, write_log: None, write_corpus: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--size-mb" => args.size_mb = value().parse().expect("--size-mb N"),
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--baseline-mb" => args.baseline_mb = value().parse().expect("--baseline-mb N"),
            "--chunk-kb" => args.chunk_kb = value().parse().expect("--chunk-kb N"),
            "--write-log" => args.write_log = Some(value()),
            "--write-corpus" => args.write_corpus = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// A generated log and the secrets planted in it (byte ranges).
struct Log {
    text: String,
    planted: Vec<(usize, usize)>,
}

fn words(rng: &mut Rng, lo: usize, hi: usize) -> String {
    let n = rng.range(lo, hi);
    const W: &[&str] = &[
        "the", "build", "request", "cache", "module", "handler", "value", "error", "config", "session", "update",
        "index", "worker", "stream", "parse", "client", "server", "retry", "timeout", "queue", "thread", "message",
        "channel", "embed", "token", "limit", "user",
    ];
    (0..n).map(|_| *rng.pick(W)).collect::<Vec<_>>().join(" ")
}

fn ident(rng: &mut Rng) -> String {
    let a = rng.string_r(corpus::LOWER, 3, 9);
    let b = rng.string_r(corpus::LOWER, 3, 9);
    format!("{a}_{b}")
}

fn block(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write as _;
    match rng.below(11) {
        0 => {
            // cargo build
            for _ in 0..rng.range(5, 40) {
                let _ = writeln!(
                    out,
                    "   Compiling {}-{} v{}.{}.{} (/home/dev/src/{})",
                    rng.string(corpus::LOWER, 6),
                    rng.string(corpus::LOWER, 4),
                    rng.below(3),
                    rng.below(30),
                    rng.below(20),
                    ident(rng)
                );
            }
            let _ = writeln!(
                out,
                "warning: unused variable: `{}`\n  --> src/{}.rs:{}:{}\n   |\n{} |     let {} = {};\n   |         ^^^^ help: if this is intentional, prefix it with an underscore\n",
                ident(rng),
                ident(rng),
                rng.range(1, 900),
                rng.range(1, 80),
                rng.range(10, 999),
                ident(rng),
                rng.range(0, 100_000)
            );
            let _ = writeln!(
                out,
                "    Finished `dev` profile [unoptimized + debuginfo] target(s) in {}.{}s",
                rng.below(90),
                rng.below(100)
            );
        }
        1 => {
            // JSON API response
            let _ = write!(out, "{{\"data\": [");
            for i in 0..rng.range(3, 30) {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"id\": \"{}\", \"name\": \"{}\", \"created_at\": \"2025-0{}-1{}T12:{:02}:00Z\", \"count\": {}, \"enabled\": {}, \"tags\": [\"{}\", \"{}\"], \"etag\": \"{}\"}}",
                    corpus::uuid(rng),
                    words(rng, 2, 2),
                    rng.range(1, 9),
                    rng.below(10),
                    rng.below(60),
                    rng.below(10_000),
                    rng.chance(50),
                    rng.string(corpus::LOWER, 5),
                    rng.string(corpus::LOWER, 7),
                    rng.string(corpus::HEX, 32)
                );
            }
            let _ = writeln!(out, "], \"next_cursor\": null, \"total\": {}}}", rng.below(100_000));
        }
        2 => {
            // git diff
            let file = ident(rng);
            let _ = writeln!(
                out,
                "diff --git a/src/{file}.rs b/src/{file}.rs\nindex {}..{} 100644\n--- a/src/{file}.rs\n+++ b/src/{file}.rs\n@@ -{},{} +{},{} @@ impl Handler {{",
                rng.string(corpus::HEX, 7),
                rng.string(corpus::HEX, 7),
                rng.range(1, 500),
                rng.range(3, 20),
                rng.range(1, 500),
                rng.range(3, 20)
            );
            for _ in 0..rng.range(5, 30) {
                let sign = *rng.pick(&[" ", " ", "+", "-"]);
                let _ = writeln!(
                    out,
                    "{sign}    let {} = self.{}(&{}).map_err(|e| Error::{}(e))?;",
                    ident(rng),
                    ident(rng),
                    ident(rng),
                    rng.pick(&["Io", "Parse", "Http"])
                );
            }
        }
        3 => {
            // env dump
            for (k, v) in [
                ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()),
                ("HOME", "/home/dev".to_string()),
                ("SHELL", "/bin/bash".to_string()),
                ("LANG", "C.UTF-8".to_string()),
                ("TERM", "xterm-256color".to_string()),
                ("PWD", format!("/home/dev/src/{}", ident(rng))),
                ("RUST_LOG", "info".to_string()),
                ("NODE_ENV", "development".to_string()),
                ("CARGO_TARGET_DIR", "/tmp/target".to_string()),
                ("HOSTNAME", rng.string(corpus::HEX, 12)),
                (
                    "SSH_AUTH_SOCK",
                    format!("/tmp/ssh-{}/agent.{}", rng.string(corpus::ALNUM, 10), rng.range(1000, 99999)),
                ),
                ("OMP_DISCORD_LOG", "warn".to_string()),
            ] {
                let _ = writeln!(out, "{k}={v}");
            }
        }
        4 => {
            // package-lock.json
            for _ in 0..rng.range(3, 25) {
                let name = rng.string_r(corpus::LOWER, 3, 12);
                let (a, b, c) = (rng.below(10), rng.below(30), rng.below(30));
                let _ = writeln!(
                    out,
                    "    \"node_modules/{name}\": {{\n      \"version\": \"{a}.{b}.{c}\",\n      \"resolved\": \"https://registry.npmjs.org/{name}/-/{name}-{a}.{b}.{c}.tgz\",\n      \"integrity\": \"sha512-{}\",\n      \"dev\": true\n    }},",
                    corpus::base64(&rng.bytes(64), false)
                );
            }
        }
        5 => {
            // Cargo.lock
            for _ in 0..rng.range(3, 25) {
                let _ = writeln!(
                    out,
                    "[[package]]\nname = \"{}\"\nversion = \"{}.{}.{}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
                    rng.string_r(corpus::LOWER, 3, 12),
                    rng.below(3),
                    rng.below(30),
                    rng.below(20),
                    rng.string(corpus::HEX, 64)
                );
            }
        }
        6 => {
            // test output
            for _ in 0..rng.range(5, 40) {
                let _ = writeln!(
                    out,
                    "test {}::tests::{} ... {}",
                    ident(rng),
                    ident(rng),
                    if rng.chance(97) { "ok" } else { "FAILED" }
                );
            }
            let _ = writeln!(
                out,
                "\ntest result: ok. {} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.{}s\n",
                rng.range(5, 200),
                rng.below(100)
            );
        }
        7 => {
            // stack trace / log lines
            for _ in 0..rng.range(5, 30) {
                let _ = writeln!(
                    out,
                    "2025-06-0{}T{:02}:{:02}:{:02}.{:03}Z {} {}: {} request_id={} duration_ms={} user_id={}",
                    rng.range(1, 9),
                    rng.below(24),
                    rng.below(60),
                    rng.below(60),
                    rng.below(1000),
                    rng.pick(&["INFO", "DEBUG", "WARN", "ERROR"]),
                    ident(rng),
                    words(rng, 3, 12),
                    corpus::uuid(rng),
                    rng.below(5000),
                    corpus::snowflake(rng)
                );
            }
        }
        8 => {
            // ls -la
            for _ in 0..rng.range(5, 30) {
                let _ = writeln!(
                    out,
                    "-rw-r--r--  1 dev dev {:>8} Jun {:>2} {:02}:{:02} {}.{}",
                    rng.below(10_000_000),
                    rng.range(1, 30),
                    rng.below(24),
                    rng.below(60),
                    ident(rng),
                    rng.pick(&["rs", "ts", "json", "toml", "md", "lock"])
                );
            }
        }
        9 => {
            // source code with config-ish assignments (not secrets)
            for _ in 0..rng.range(5, 25) {
                let _ = writeln!(
                    out,
                    "    const {} = {{ timeout: {}, retries: {}, name: \"{}\", token_type: \"bearer\", max_tokens: {} }};",
                    ident(rng),
                    rng.below(60_000),
                    rng.below(10),
                    words(rng, 2, 2),
                    rng.below(8192)
                );
            }
        }
        _ => {
            // prose / markdown from the model
            for _ in 0..rng.range(2, 8) {
                let _ = writeln!(out, "{}.\n", words(rng, 8, 40));
            }
        }
    }
}

fn generate_log(size: usize) -> Log {
    let mut rng = Rng::new(LOG_SEED);
    let secrets = corpus::positives(LOG_SEED ^ 1, 60);
    let mut text = String::with_capacity(size + 64 * 1024);
    let mut planted = Vec::new();
    let mut next_secret = 0usize;
    while text.len() < size {
        block(&mut rng, &mut text);
        // About one secret per 20 KB, as its own line(s).
        if rng.chance(8) {
            let case: &Case = &secrets[next_secret % secrets.len()];
            next_secret += 1;
            let base = text.len();
            text.push_str(&case.text);
            text.push('\n');
            for (_, value) in &case.secrets {
                for (i, _) in case.text.match_indices(value.as_str()) {
                    planted.push((base + i, base + i + value.len()));
                }
            }
        }
    }
    Log { text, planted }
}

/// Chunks of about `size` bytes, split after a newline.
fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        if end < text.len() {
            end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

#[derive(serde::Deserialize)]
struct Pattern {
    kind: String,
    pattern: String,
    flags: String,
}

/// The naive approach: every rule as a regex over every line.
struct Naive {
    set: regex::RegexSet,
    rules: Vec<regex::Regex>,
}

impl Naive {
    fn new() -> Self {
        let patterns: Vec<Pattern> =
            serde_json::from_str(include_str!("../tests/fixtures/redaction/baseline-patterns.json"))
                .expect("valid baseline-patterns.json");
        let sources: Vec<String> = patterns
            .iter()
            .map(|p| {
                let _ = &p.kind;
                if p.flags.contains('i') { format!("(?i){}", p.pattern) } else { p.pattern.clone() }
            })
            .collect();
        Naive {
            set: regex::RegexSet::new(&sources).expect("valid patterns"),
            rules: sources.iter().map(|s| regex::Regex::new(s).expect("valid pattern")).collect(),
        }
    }

    /// Number of matches in `text`.
    fn count(&self, text: &str) -> usize {
        let mut n = 0;
        for line in text.lines() {
            for i in self.set.matches(line).iter() {
                n += self.rules[i].find_iter(line).count();
            }
        }
        n
    }
}

fn corpus_score(cases: &[Case]) -> (usize, usize, usize, usize) {
    let (mut secrets, mut found, mut negatives, mut flagged) = (0, 0, 0, 0);
    for case in cases {
        let findings = find_secrets(&case.text);
        if case.secrets.is_empty() {
            negatives += 1;
            flagged += usize::from(!findings.is_empty());
            continue;
        }
        for (_, value) in &case.secrets {
            secrets += 1;
            let all = case
                .text
                .match_indices(value.as_str())
                .all(|(i, v)| findings.iter().any(|f| f.start <= i && f.end >= i + v.len()));
            found += usize::from(all);
        }
    }
    (secrets, found, negatives, flagged)
}

fn main() {
    let args = parse_args();
    let size = args.size_mb << 20;
    let t0 = Instant::now();
    let log = generate_log(size);
    println!(
        "log: {:.1} MB generated in {:.1?}, {} secrets planted",
        log.text.len() as f64 / 1e6,
        t0.elapsed(),
        log.planted.len()
    );
    if let Some(path) = &args.write_log {
        std::fs::write(path, &log.text).expect("write the log");
        println!("log written to {path}");
    }

    // Corpus: recall and false-positive rate.
    let mut cases = corpus::positives(0x5EC2_E75A_0001, 40);
    cases.extend(corpus::negatives(0x5EC2_E75A_0002, 4000));
    if let Some(path) = &args.write_corpus {
        let lines: Vec<String> = cases
            .iter()
            .map(|c| {
                let secrets: Vec<_> =
                    c.secrets.iter().map(|(k, v)| serde_json::json!({ "kind": k, "value": v })).collect();
                serde_json::json!({ "text": c.text, "secrets": secrets }).to_string()
            })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").expect("write the corpus");
        println!("corpus written to {path}");
    }
    let (secrets, found, negatives, flagged) = corpus_score(&cases);
    println!(
        "corpus: {} cases; recall {:.4} ({found}/{secrets}); false-positive rate {:.4} ({flagged}/{negatives})",
        cases.len(),
        found as f64 / secrets as f64,
        flagged as f64 / negatives as f64
    );

    // Recall and stray findings on the log itself.
    let findings = find_secrets(&log.text);
    let covered = log.planted.iter().filter(|&&(a, b)| findings.iter().any(|f| f.start <= a && f.end >= b)).count();
    let stray: Vec<&Finding> =
        findings.iter().filter(|f| !log.planted.iter().any(|&(a, b)| f.start < b && a < f.end)).collect();
    println!(
        "log: {} findings; planted secrets covered {covered}/{}; findings outside planted secrets: {}",
        findings.len(),
        log.planted.len(),
        stray.len()
    );
    for f in stray.iter().take(5) {
        let from = f.start.saturating_sub(40);
        let from = (0..=from).rev().find(|&i| log.text.is_char_boundary(i)).unwrap_or(0);
        let to = (f.end + 20..).find(|&i| i >= log.text.len() || log.text.is_char_boundary(i)).unwrap();
        println!("  stray {}: {:?}", f.kind, &log.text[from..to.min(log.text.len())]);
    }

    // Throughput: the whole log as one text, and in tool-output-sized chunks.
    let redactor = Redactor::new();
    let bytes = log.text.len();
    let whole = median(
        (0..args.runs)
            .map(|_| {
                let t = Instant::now();
                let out = redactor.redact(&log.text);
                std::hint::black_box(&out);
                t.elapsed()
            })
            .collect(),
    );
    let pieces = chunks(&log.text, args.chunk_kb << 10);
    let chunked = median(
        (0..args.runs)
            .map(|_| {
                let t = Instant::now();
                for piece in &pieces {
                    std::hint::black_box(redactor.redact(piece));
                }
                t.elapsed()
            })
            .collect(),
    );
    let native = mbps(bytes, whole);
    println!(
        "native: {:.0} MB/s whole log ({whole:.1?}), {:.0} MB/s in {} chunks of ~{} KB (median of {})",
        native,
        mbps(bytes, chunked),
        pieces.len(),
        args.chunk_kb,
        args.runs
    );

    // Naive baseline on a prefix of the log (it is slow).
    let naive = Naive::new();
    let prefix_end = (args.baseline_mb << 20).min(bytes);
    let prefix_end = log.text[prefix_end..].find('\n').map_or(bytes, |i| prefix_end + i + 1);
    let prefix = &log.text[..prefix_end];
    let t = Instant::now();
    let matches = naive.count(prefix);
    let naive_time = t.elapsed();
    let naive_mbps = mbps(prefix.len(), naive_time);
    println!(
        "naive baseline ({} regexes, RegexSet per line + each matching rule): {:.1} MB/s on the first {:.1} MB ({matches} matches, {naive_time:.1?})",
        naive.rules.len(),
        naive_mbps,
        prefix.len() as f64 / 1e6
    );
    println!("speed-up over the naive baseline: {:.1}x", native / naive_mbps);
}
