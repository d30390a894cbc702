//! Runs the redaction corpus generator at scale: the positives and negatives
//! of many seeds through both redactors, printing every secret left in the
//! clear and every text changed without a secret in it. The property tests
//! draw a few hundred cases per run, so a rule that misses one case in
//! 100,000 shows up in CI only now and then; run this before changing a rule.
//!
//! ```sh
//! cargo run --release -p omp-discord-core --example corpus_scan -- [--seeds 100000] [--from 0] [--show 20]
//! ```
//!
//! Prints the cases, then one line of totals; exits 1 when anything was missed.

#[path = "../tests/fixtures/redaction/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;

use omp_discord_core::redact::Redactor;

fn main() {
    let (mut seeds, mut from, mut show) = (100_000u64, 0u64, 20usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seeds" => seeds = value.parse().expect("--seeds N"),
            "--from" => from = value.parse().expect("--from N"),
            "--show" => show = value.parse().expect("--show N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let redactors = [("standard", Redactor::new()), ("conservative", Redactor::conservative())];
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut positives, mut negatives, mut false_positives) = (0usize, 0usize, 0usize);
    for seed in from..from + seeds {
        for case in corpus::positives(seed, 1) {
            positives += 1;
            for (name, redactor) in &redactors {
                let out = redactor.redact(&case.text).text;
                for (kind, secret) in &case.secrets {
                    if out.contains(secret.as_str()) {
                        let n = missed.entry(format!("{name} {kind}")).or_default();
                        *n += 1;
                        if *n <= show {
                            println!("missed ({name}, seed {seed}) {kind} {secret:?} in {:?}", case.text);
                        }
                    }
                }
            }
        }
        for case in corpus::negatives(seed, 20) {
            negatives += 1;
            let out = Redactor::new().redact(&case.text).text;
            if out != case.text {
                false_positives += 1;
                if false_positives <= show {
                    println!("false positive (seed {seed}) {:?} -> {out:?}", case.text);
                }
            }
        }
    }
    let total_missed: usize = missed.values().sum();
    println!(
        "{seeds} seeds: {positives} positive cases, missed {total_missed} {missed:?}; \
         {negatives} negative cases, {false_positives} false positives"
    );
    if total_missed > 0 || false_positives > 0 {
        std::process::exit(1);
    }
}
