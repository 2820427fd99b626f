//! The configuration README documents is the configuration the code reads: every variable in
//! README's table is read (by a flag's `env`, shown in `--help`, or directly in the source),
//! every variable read is in the table, and each deprecated name still works, with a warning.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{readme_env_table, repo, LILYPAD};

/// Variables read only to pass them on to processes the agents start (the module builder's
/// `PATH` and `HOME`), not configuration of `lilypad` itself.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME"];

fn help(path: &[String]) -> String {
    let out = Command::new(LILYPAD).args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "lilypad {path:?} --help: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a `--help` page lists under `Commands:` (without `help`).
fn subcommands(page: &str) -> Vec<String> {
    let Some(start) = page.find("Commands:\n") else { return Vec::new() };
    page[start + "Commands:\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every `[env: NAME...]` of every command's `--help`, all the way down.
fn flag_variables() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![Vec::<String>::new()];
    let mut pages = 0;
    while let Some(path) = todo.pop() {
        let page = help(&path);
        pages += 1;
        for piece in page.split("[env: ").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            assert!(!name.is_empty(), "an [env: ...] without a name in lilypad {path:?} --help");
            out.insert(name);
        }
        for sub in subcommands(&page) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    assert!(pages > 10, "walked only {pages} help pages: is the `Commands:` parsing broken?");
    out
}

/// Names in `std::env::var("X")`, `var_os("X")` and `try_from_env("X")` in the agents' sources.
fn direct_variables() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![repo().join("agents")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "tests" | "target" | "node_modules") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") && path.components().any(|c| c.as_os_str() == "src") {
                let text = std::fs::read_to_string(&path).unwrap();
                // the code above a file's unit tests
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for call in ["env::var(\"", "env::var_os(\"", "try_from_env(\""] {
                    for piece in code.split(call).skip(1) {
                        let var: String = piece.chars().take_while(|c| *c != '"').collect();
                        if !PASSED_THROUGH.contains(&var.as_str()) {
                            out.insert(var);
                        }
                    }
                }
            }
        }
    }
    out
}

/// `("OLD", "NEW")` pairs of `agents/cli/src/env.rs`'s `DEPRECATED`.
fn deprecated_in_code() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo().join("agents/cli/src/env.rs")).unwrap();
    let table = &text[text.find("DEPRECATED").unwrap()..];
    let table = &table[..table.find("];").unwrap()];
    table
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(\""))
        .map(|l| {
            let parts: Vec<&str> = l.split('"').collect();
            (parts[0].to_string(), parts[2].to_string())
        })
        .collect()
}

#[test]
fn readme_documents_exactly_the_variables_the_code_reads() {
    let read: BTreeSet<String> = flag_variables().into_iter().chain(direct_variables()).collect();
    let table = readme_env_table();
    let documented: BTreeSet<String> = table.iter().map(|(v, _)| v.clone()).collect();
    let undocumented: Vec<&String> = read.difference(&documented).collect();
    let unread: Vec<&String> = documented.difference(&read).collect();
    assert!(undocumented.is_empty(), "read by the code but not in README's table: {undocumented:?}");
    assert!(unread.is_empty(), "in README's table but read nowhere: {unread:?}");

    let replaced: BTreeSet<(String, String)> = table.iter().filter_map(|(new, old)| old.clone().map(|old| (old, new.clone()))).collect();
    assert_eq!(replaced, deprecated_in_code(), "README's `Replaces` column and the deprecated names the code accepts");
}

#[test]
fn a_deprecated_name_still_works_and_says_what_to_rename_it_to() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    // a loopback port where nothing listens: the fetch fails, naming the gateway it was given
    let cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let out = Command::new(LILYPAD)
        .args(["--data-dir", dir.path().to_str().unwrap(), "ipfs", "get", cid, dest.to_str().unwrap()])
        .env_remove("LILYPAD_OUTPUTS_GATEWAY")
        .env("IPFS_GATEWAY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("IPFS_GATEWAY is deprecated: rename it to LILYPAD_OUTPUTS_GATEWAY"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "the deprecated variable's value was used: {stderr}");

    let out = Command::new(LILYPAD)
        .args(["ipfs", "get", cid, dest.to_str().unwrap()])
        .env("LILYPAD_OUTPUTS_GATEWAY", "http://127.0.0.1:9")
        .env("IPFS_GATEWAY", "http://127.0.0.1:10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IPFS_GATEWAY is deprecated and ignored"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9") && !stderr.contains("127.0.0.1:10"), "the new name wins: {stderr}");
}
