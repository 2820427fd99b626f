//! The systemd units in deployments/systemd are ones an operator can install as they are:
//! `systemd-analyze verify` accepts each (with its `ExecStart` pointed at the binary under test),
//! each runs as a dedicated account (never root), every flag in its `ExecStart` is one its
//! command accepts, and every variable it sets or asks for in its environment file is one the
//! agents read (README's table, which tests/env_vars.rs ties to the code).
//!
//! Needs `systemd-analyze` (Debian's `systemd` package): without it the verify step is skipped
//! with a message, unless LILYPAD_REQUIRE_SYSTEMD=1 (tools/test sets it).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::{readme_env_table, repo, LILYPAD};

const INSTALLED_AT: &str = "/usr/local/bin/lilypad";

fn units() -> Vec<(String, String)> {
    let dir = repo().join("deployments/systemd");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 4, "units for the solver, provider, mediator and keeper: {:?}", out.iter().map(|u| &u.0).collect::<Vec<_>>());
    out
}

/// The values of `key=` lines of a unit (not comments).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('='))).collect()
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let tool = Command::new("systemd-analyze").arg("--version").output();
    if !tool.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var("LILYPAD_REQUIRE_SYSTEMD").as_deref() != Ok("1"), "systemd-analyze is needed (Debian package systemd)");
        eprintln!("\n!!! SKIPPING systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in units() {
        assert!(text.contains(&format!("ExecStart={INSTALLED_AT} ")) || text.contains(&format!("ExecStart={INSTALLED_AT}\n")), "{name} runs {INSTALLED_AT}");
        let path: PathBuf = dir.path().join(&name);
        std::fs::write(&path, text.replace(INSTALLED_AT, LILYPAD)).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // systemd on a machine without its own unit set (a container) may warn about units
        // this one only names (`docker.service`, `network-online.target`): only this unit's
        // own lines count
        let own: Vec<&str> = said.lines().filter(|l| l.contains(&name)).collect();
        assert!(out.status.success() && own.is_empty(), "systemd-analyze verify {name}:\n{said}");
    }
}

#[test]
fn every_unit_runs_as_a_dedicated_account_with_a_private_state_folder() {
    for (name, text) in units() {
        let user = values(&text, "User");
        assert_eq!(user, ["lilypad"], "{name}: User=lilypad (never root)");
        assert!(text.contains("useradd --system"), "{name}: its install steps make the account");
        assert_eq!(values(&text, "StateDirectoryMode"), ["0700"], "{name}: the state folder is private");
        assert_eq!(values(&text, "NoNewPrivileges"), ["true"], "{name}");
        assert_eq!(values(&text, "ProtectSystem"), ["strict"], "{name}");
        assert!(!values(&text, "LimitNOFILE").is_empty(), "{name}: room for many connections");
        let docker = text.contains("Requires=docker.service");
        assert_eq!(values(&text, "SupplementaryGroups").contains(&"docker"), docker, "{name}: the docker group exactly when it needs Docker");
        assert!(values(&text, "ExecStart").iter().all(|e| !e.contains("--private-key")), "{name}: keys never in argv (ps shows it)");
    }
}

#[test]
fn every_flag_in_exec_start_is_one_the_command_accepts() {
    for (name, text) in units() {
        let exec = values(&text, "ExecStart");
        assert_eq!(exec.len(), 1, "{name}: one ExecStart");
        let words: Vec<&str> = exec[0].split_whitespace().collect();
        assert_eq!(words[0], INSTALLED_AT);
        let command = words[1];
        let out = Command::new(LILYPAD).args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{name}: `lilypad {command}` is a command");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")) || help.contains(&format!("{flag}=")) || help.contains(&format!("{flag} <")), "{name}: `lilypad {command}` has no flag {flag}:\n{help}");
        }
    }
}

#[test]
fn every_variable_a_unit_names_is_one_the_agents_read() {
    let known: BTreeSet<String> = readme_env_table().into_iter().map(|(v, _)| v).collect();
    for (name, text) in units() {
        let mut named: Vec<String> = Vec::new();
        for line in values(&text, "Environment") {
            named.extend(line.split_whitespace().filter_map(|kv| kv.split('=').next()).map(str::to_string));
        }
        // the environment file's variables, listed in the install comment as `#   NAME=...`
        for line in text.lines().filter_map(|l| l.strip_prefix("#   ")) {
            let var: String = line.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if !var.is_empty() && line[var.len()..].starts_with('=') {
                named.push(var);
            }
        }
        assert!(named.iter().any(|v| v == "LILYPAD_DATA_DIR"), "{name} sets its data folder");
        for var in &named {
            assert!(known.contains(var), "{name} names {var}, which no agent reads (README's table: {known:?})");
        }
    }
}
