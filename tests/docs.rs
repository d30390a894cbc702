//! The docs stay true: every `omp-discord` command and flag they show runs,
//! every slash command they name exists, and every `OMP_DISCORD_*` variable
//! is both documented and used. (Config file keys are checked against the
//! parser in `src/config/file.rs`'s unit tests.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{repo, sidecar_bin};

/// README.md and every file in docs/.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The code in a Markdown text: each line of a fenced block, and each inline code span.
fn code_snippets(text: &str) -> Vec<String> {
    let mut snippets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            snippets.push(line.to_owned());
        } else {
            snippets.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    snippets
}

/// `omp-discord` invocations in a snippet: (subcommand, flags), for commands
/// that start the snippet or follow `$ `, `&&`, `;`, `|` or `$(`.
fn invocations(snippet: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for command in snippet.split(['|', ';', '\n']).flat_map(|part| part.split("&&")).flat_map(|p| p.split("$(")) {
        let command = command.trim().trim_start_matches("$ ");
        let mut words = command.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-')).peekable();
        if words.next() != Some("omp-discord") {
            continue;
        }
        // Global options come before the subcommand: `omp-discord --log-format json serve`.
        while words.next_if(|w| w.starts_with("--")).is_some_and(|flag| !flag.contains('=')) {
            words.next_if(|w| !w.starts_with('-'));
        }
        let Some(sub) = words.next().filter(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-')) else {
            continue;
        };
        let flags = words
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split(['=', ')', ']', ',']).next().unwrap().to_owned())
            .collect();
        found.push((sub.to_owned(), flags));
    }
    found
}

#[test]
fn every_documented_command_and_flag_exists() {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in doc_files() {
        for snippet in code_snippets(&std::fs::read_to_string(&file).unwrap()) {
            for (sub, flags) in invocations(&snippet) {
                wanted.entry(sub).or_default().extend(flags);
            }
        }
    }
    assert!(wanted.len() >= 8, "the docs show few commands; is the parser broken? {wanted:?}");
    for (sub, flags) in &wanted {
        let output = std::process::Command::new(sidecar_bin()).args([sub, "--help"]).output().unwrap();
        assert!(output.status.success(), "the docs show `omp-discord {sub}`, which does not exist");
        let help = String::from_utf8_lossy(&output.stdout);
        for flag in flags {
            assert!(help.contains(flag.as_str()), "the docs show `omp-discord {sub} {flag}`; its --help:\n{help}");
        }
    }
}

#[test]
fn every_documented_slash_command_exists() {
    let definitions = serde_json::to_value(omp_discord_core::commands::definitions()).unwrap();
    let omp: BTreeSet<String> =
        definitions[0]["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()).collect();
    // `/discord`'s verbs, as core parses and completes them for the shim.
    let discord: BTreeSet<&str> = omp_discord_core::shim::command::completions("")
        .into_iter()
        .filter_map(|completion| completion.split(' ').next())
        .collect();
    let mut checked = 0;
    for file in doc_files() {
        for snippet in code_snippets(&std::fs::read_to_string(&file).unwrap()) {
            let words: Vec<&str> = snippet.split_whitespace().collect();
            for pair in words.windows(2) {
                let sub = pair[1].trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
                match pair[0] {
                    "/omp" => assert!(omp.contains(sub), "{}: `/omp {sub}` is not a subcommand", file.display()),
                    "/discord" => assert!(
                        discord.contains(sub),
                        "{}: `/discord {sub}` is not handled by the shim",
                        file.display()
                    ),
                    _ => continue,
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "few slash commands found in the docs ({checked})");
}

/// `OMP_DISCORD_*` names in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("OMP_DISCORD_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        let name = name.trim_end_matches('_');
        // `OMP_DISCORD_*` in prose names them all.
        if name != "OMP_DISCORD" {
            found.insert(name.to_owned());
        }
    }
    found
}

/// The product's source files (not tests, benches or fixtures).
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "target" | "node_modules" | "examples") {
                source_files(&path, out);
            }
        } else if (name.ends_with(".rs") || name.ends_with(".ts")) && !name.ends_with(".test.ts") {
            out.push(path);
        }
    }
}

#[test]
fn every_variable_is_documented_and_every_documented_variable_is_read() {
    let documented: BTreeSet<String> =
        doc_files().iter().flat_map(|f| variables(&std::fs::read_to_string(f).unwrap())).collect();
    let mut files = Vec::new();
    for dir in ["src", "js-shim", "crates/core/src", "crates/wasm/src", "crates/demo/src"] {
        source_files(&repo().join(dir), &mut files);
    }
    // The scripted model is part of the demo.
    files.push(repo().join("tests/fixtures/scripted-model.ts"));
    let used: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            // Only the non-test part of a Rust file.
            let product = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
            variables(&product)
        })
        .collect();
    // Set by build.rs for the compiler, not by users.
    let build_time = BTreeSet::from(["OMP_DISCORD_COMMIT".to_owned()]);
    let used: BTreeSet<String> = used.difference(&build_time).cloned().collect();
    let undocumented: Vec<&String> = used.difference(&documented).collect();
    assert!(undocumented.is_empty(), "read by the code but not in README.md or docs/: {undocumented:?}");
    // docs/testing.md documents the tests' own knobs (e.g. the crash test's seed).
    let tests: BTreeSet<String> = std::fs::read_dir(repo().join("tests"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .flat_map(|e| variables(&std::fs::read_to_string(e.path()).unwrap()))
        .collect();
    let read: BTreeSet<String> = used.union(&tests).cloned().collect();
    let unread: Vec<&String> = documented.difference(&read).collect();
    assert!(unread.is_empty(), "documented but read nowhere: {unread:?}");
}

#[tokio::test]
async fn every_table_and_column_of_the_state_database_is_documented() {
    let dir = crate::util::TestDir::new();
    let sidecar = crate::util::Sidecar::start(&dir, &crate::util::sidecar_env(&dir, None)).await;
    // Answering a client means the outbox is open and migrated.
    drop(crate::util::Client::greeted(&dir.socket()).await);
    let path = dir.home().join(".local/state/omp-discord/outbox.sqlite3");
    let db = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.len() >= 5, "{tables:?}");
    let docs = std::fs::read_to_string(repo().join("docs/internals.md")).unwrap();
    let schema = &docs[docs.find("## The state database").expect("a schema section")..];
    for table in &tables {
        let section = schema
            .split("\n### ")
            .find(|s| s.starts_with(&format!("`{table}`")))
            .unwrap_or_else(|| panic!("docs/internals.md has no `### `{table}`` section"));
        let columns: Vec<String> = db
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for column in columns {
            assert!(section.contains(&format!("`{column}`")), "docs/internals.md does not explain {table}.{column}");
        }
    }
    drop(sidecar);
}
