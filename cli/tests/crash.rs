//! `kill -9` during `apitoken issue`, at every moment of its run: every token the command
//! printed authenticates afterwards, the file always opens and lists, and a run killed
//! after its commit but before it printed leaves a live token nobody holds, which `list`
//! shows and `revoke` removes (docs/RELIABILITY.md).
#![allow(clippy::print_stderr)] // the closing summary is what RELIABILITY.md quotes

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ENV: &str = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d";
const READ: &str = "environment.apiTokens.read";

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cli(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apitoken"));
    for var in ["APITOKEN_DB", "DATABASE_URL", "APITOKEN_HASH_KEY"] {
        command.env_remove(var);
    }
    command
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs to the end; returns standard output, after checking the exit status.
fn run(db: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = cli(db, args).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "apitoken {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn listed(db: &Path) -> Vec<Value> {
    let json: Value =
        serde_json::from_str(&run(db, &["list", "--env", ENV, "--json"], "")).unwrap();
    match json {
        Value::Array(tokens) => tokens,
        other => other["tokens"]
            .as_array()
            .expect("a list of tokens")
            .clone(),
    }
}

#[test]
fn a_killed_issue_never_loses_a_printed_token_nor_the_file() {
    let dir = std::env::temp_dir().join(format!("apitoken-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = Scratch(dir);
    let db = scratch.0.join("tokens.db");
    // The first run creates the file, so that the kills below land in the issue itself.
    run(
        &db,
        &["issue", "--env", ENV, "--note", "first", "--scope", READ],
        "",
    );

    let mut printed = Vec::new();
    let rounds = 48u64;
    for round in 0..rounds {
        let note = format!("crash {round}");
        let mut child = cli(
            &db,
            &["issue", "--env", ENV, "--note", &note, "--scope", READ],
        )
        .spawn()
        .unwrap();
        // Kill it at a different moment each round: at start-up, while opening, around
        // the commit, after printing.
        std::thread::sleep(Duration::from_micros(round * 1_500));
        let _ = child.kill(); // SIGKILL; fails only if it already exited
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        if let Ok(json) = serde_json::from_str::<Value>(&out) {
            let token = &json["token"];
            printed.push((
                token["id"].as_str().unwrap().to_owned(),
                token["rawToken"].as_str().unwrap().to_owned(),
            ));
        }
    }

    // The file opens and lists after every kind of kill.
    let tokens = listed(&db);
    let ids: Vec<&str> = tokens.iter().map(|t| t["id"].as_str().unwrap()).collect();
    for (id, raw) in &printed {
        assert!(ids.contains(&id.as_str()), "printed token {id} was lost");
        run(&db, &["verify", "-", "--env", ENV, "--scope", READ], raw);
    }
    // Killed after the commit, before printing: stored, held by nobody, and revocable.
    let orphans: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["note"] != "first" && !printed.iter().any(|(id, _)| t["id"] == id.as_str()))
        .collect();
    assert!(
        tokens.len() <= 1 + rounds as usize,
        "no kill made two tokens: {} listed",
        tokens.len()
    );
    for orphan in &orphans {
        let id = orphan["id"].as_str().unwrap();
        run(&db, &["revoke", "--env", ENV, "--id", id], "");
    }
    let after = listed(&db);
    for orphan in &orphans {
        let id = &orphan["id"];
        let token = after.iter().find(|t| &t["id"] == id).unwrap();
        assert_eq!(token["active"], false, "orphan {id} revoked");
    }
    eprintln!(
        "{rounds} runs killed at 0 to {} ms: {} printed a token, {} left an orphan, {} stored nothing",
        (rounds - 1) * 3 / 2,
        printed.len(),
        orphans.len(),
        rounds as usize - printed.len() - orphans.len()
    );
}
