//! The configuration as users meet it, through the real binary: `--help`, `--version`, exit
//! code 2 naming the variable for every kind of bad value, and the table in
//! docs/configuration.md, which is generated from the same definition `--help` renders.

use std::time::Duration;

use clap::CommandFactory;
use roomcast::config::Config;

use crate::harness::process::binary;

/// Runs the binary with `args` and only `env` (plus PATH); returns (exit code, stdout, stderr).
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("binary exits within 20 s")
        .expect("binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts that `env` (and `args`) stop the binary with exit code 2 and a message that names
/// `variable` and does not contain `hidden`.
async fn assert_rejected(args: &[&str], env: &[(&str, &str)], variable: &str, hidden: &str) {
    let (code, stdout, stderr) = run(args, env).await;
    assert_eq!(
        code,
        Some(2),
        "{args:?} {env:?} must exit 2; stdout: {stdout} stderr: {stderr}"
    );
    assert!(
        stderr.contains(variable),
        "the error for {args:?} {env:?} must name {variable}, got: {stderr}"
    );
    if !hidden.is_empty() {
        assert!(
            !stderr.contains(hidden) && !stdout.contains(hidden),
            "the error for {variable} echoed the secret: {stderr}"
        );
    }
}

#[tokio::test]
async fn an_invalid_number_exits_2_naming_the_variable() {
    assert_rejected(&[], &[("PORT", "eighty")], "PORT", "").await;
    assert_rejected(&[], &[("PORT", "70000")], "PORT", "").await;
    assert_rejected(&[], &[("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS", "").await;
    // The flag form names the variable too.
    assert_rejected(&["--port", "eighty"], &[], "PORT", "").await;
}

#[tokio::test]
async fn an_invalid_duration_exits_2_naming_the_variable() {
    assert_rejected(
        &[],
        &[("SHUTDOWN_TIMEOUT_SECS", "soon")],
        "SHUTDOWN_TIMEOUT_SECS",
        "",
    )
    .await;
    assert_rejected(&[], &[("JOB_LOCK_TTL_SECS", "2")], "JOB_LOCK_TTL_SECS", "").await;
    assert_rejected(&[], &[("BREAKER_OPEN_MS", "-5")], "BREAKER_OPEN_MS", "").await;
}

#[tokio::test]
async fn an_invalid_url_exits_2_naming_the_variable_without_echoing_it() {
    assert_rejected(&[], &[("REDIS_URL", "not-a-url")], "REDIS_URL", "not-a-url").await;
    assert_rejected(
        &[],
        &[("REDIS_URL", "http://user:hunter2@127.0.0.1:6379")],
        "REDIS_URL",
        "hunter2",
    )
    .await;
    assert_rejected(
        &[],
        &[("DATABASE_URL", "mysql://app:hunter2@db/app")],
        "DATABASE_URL",
        "hunter2",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_key_exits_2_naming_the_variable_without_echoing_it() {
    assert_rejected(
        &[],
        &[("SESSION_ENCRYPTION_KEY", "c2VjcmV0LXRvby1zaG9ydA")],
        "SESSION_ENCRYPTION_KEY",
        "c2VjcmV0LXRvby1zaG9ydA",
    )
    .await;
    assert_rejected(
        &[],
        &[("SESSION_SECRET", "short-secret")],
        "SESSION_SECRET",
        "short-secret",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_enum_exits_2_naming_the_variable_and_the_choices() {
    let (code, _, stderr) = run(&[], &[("LOG_FORMAT", "xml")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("LOG_FORMAT") && stderr.contains("text") && stderr.contains("json"),
        "the error must name LOG_FORMAT and its choices, got: {stderr}"
    );
    assert_rejected(&[], &[("COOKIE_SECURE", "maybe")], "COOKIE_SECURE", "").await;
}

#[tokio::test]
async fn an_invalid_list_entry_exits_2_naming_the_variable() {
    assert_rejected(
        &[],
        &[("CORS_ORIGINS", "https://ok.example,example.com")],
        "CORS_ORIGINS",
        "",
    )
    .await;
    let keys = format!("{},bm90LWEta2V5", "11".repeat(32));
    assert_rejected(
        &[],
        &[("SESSION_ENCRYPTION_KEYS_OLD", keys.as_str())],
        "SESSION_ENCRYPTION_KEYS_OLD",
        "bm90LWEta2V5",
    )
    .await;
    assert_rejected(
        &[],
        &[("REDIS_CLUSTER_NODES", "10.0.0.1:7000,10.0.0.2:port")],
        "REDIS_CLUSTER_NODES",
        "",
    )
    .await;
}

#[tokio::test]
async fn settings_that_exclude_each_other_exit_2_naming_both() {
    let key = "11".repeat(32);
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
        ("SESSION_ENCRYPTION_KEY", key.as_str()),
        ("SESSION_SECRET", "a-cluster-wide-cookie-secret-0123456789"),
    ];
    assert_rejected(&[], &env, "REDIS_URL", "").await;
    assert_rejected(&[], &env, "REDIS_CLUSTER_NODES", "").await;
    assert_rejected(
        &[],
        &[("REDIS_URL", "redis://127.0.0.1:6379")],
        "SESSION_ENCRYPTION_KEY",
        "",
    )
    .await;
}

#[tokio::test]
async fn help_lists_every_setting_with_its_variable_and_default() {
    let (code, help, stderr) = run(&["--help"], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    for arg in Config::command().get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let long = arg.get_long().expect("every setting has a flag");
        assert!(help.contains(&format!("--{long}")), "--help lacks --{long}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "--help lacks the variable {env}"
        );
        for default in arg.get_default_values() {
            let default = default.to_string_lossy();
            assert!(
                help.contains(&format!("[default: {default}]")),
                "--help lacks the default of {env} ({default})"
            );
        }
    }
    for heading in ["Listener", "Sessions", "Cluster mode (Redis)", "Limits"] {
        assert!(help.contains(heading), "--help lacks the {heading} group");
    }
}

#[tokio::test]
async fn help_shows_plain_values_from_the_environment_but_never_secrets() {
    let key = "ab".repeat(32);
    let secrets = [
        (
            "SESSION_SECRET",
            "sixteen-plus-characters-of-cookie-secret-0001",
        ),
        ("ADMIN_TOKEN", "an-admin-token-0002"),
        ("REDIS_URL", "redis://:redis-password-0003@127.0.0.1:6379"),
        ("DATABASE_URL", "postgres://app:db-password-0004@db/app"),
        ("SESSION_ENCRYPTION_KEY", key.as_str()),
    ];
    let mut env = secrets.to_vec();
    env.push(("PORT", "4711"));
    let (code, help, stderr) = run(&["--help"], &env).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(help.contains("PORT=4711"), "--help shows plain values");
    for (variable, value) in secrets {
        assert!(
            !help.contains(value) && !help.contains("password-000"),
            "--help shows the value of {variable}"
        );
    }
}

#[tokio::test]
async fn version_prints_name_version_and_commit() {
    let (code, stdout, stderr) = run(&["--version"], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let expected = format!("roomcast {} (", env!("CARGO_PKG_VERSION"));
    assert!(
        stdout.starts_with(&expected) && stdout.trim_end().ends_with(')'),
        "expected `{expected}<commit>)`, got `{stdout}`"
    );
    let commit = &stdout.trim_end()[expected.len()..stdout.trim_end().len() - 1];
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "the commit must be a git id or `unknown`, got `{commit}`"
    );
}

const TABLE_START: &str = "<!-- settings table: generated from `roomcast --help` by tests/it/configuration.rs; \
                           regenerate with UPDATE_CONFIG_DOCS=1 cargo test --test it configuration:: -->";
const TABLE_END: &str = "<!-- end of generated settings table -->";

/// The settings as Markdown: one table per `--help` heading, from the definition `--help`
/// renders (flag, variable, default, help text).
fn settings_markdown() -> String {
    let command = Config::command();
    let mut headings: Vec<String> = Vec::new();
    for arg in command.get_arguments() {
        if let Some(heading) = arg.get_help_heading() {
            if !headings.iter().any(|h| h == heading) {
                headings.push(heading.to_owned());
            }
        }
    }
    let mut out = String::new();
    for heading in headings {
        out.push_str(&format!(
            "\n### {heading}\n\n| variable | flag | default | meaning |\n|---|---|---|---|\n"
        ));
        for arg in command
            .get_arguments()
            .filter(|a| a.get_help_heading() == Some(heading.as_str()))
        {
            let env = arg
                .get_env()
                .and_then(|e| e.to_str())
                .expect("every setting has a variable");
            let long = arg.get_long().expect("every setting has a flag");
            let value = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|name| format!(" <{name}>"))
                .unwrap_or_default();
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|d| format!("`{}`", d.to_string_lossy()))
                .collect();
            let default = if !defaults.is_empty() {
                defaults.join(", ")
            } else if let Some((text, described)) = help.clone().rsplit_once(" [default: ") {
                help = text.to_owned();
                described.trim_end_matches(']').to_owned()
            } else {
                "unset".to_owned()
            };
            let mut meaning = help.replace('|', "\\|");
            let choices: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !choices.is_empty() {
                meaning.push_str(&format!(" One of {}.", choices.join(", ")));
            }
            if arg.is_hide_env_values_set() {
                meaning.push_str(" Secret: never printed.");
            }
            out.push_str(&format!(
                "| `{env}` | `--{long}{value}` | {default} | {meaning} |\n"
            ));
        }
    }
    out
}

#[test]
fn docs_configuration_table_matches_help() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let (before, rest) = doc
        .split_once(TABLE_START)
        .expect("docs/configuration.md has the generated-table start marker");
    let (current, after) = rest
        .split_once(TABLE_END)
        .expect("docs/configuration.md has the generated-table end marker");
    let generated = format!("{}\n", settings_markdown());
    if std::env::var_os("UPDATE_CONFIG_DOCS").is_some() {
        std::fs::write(
            path,
            format!("{before}{TABLE_START}\n{generated}{TABLE_END}{after}"),
        )
        .expect("write docs/configuration.md");
        return;
    }
    assert!(
        current.trim() == generated.trim(),
        "docs/configuration.md is out of date with `roomcast --help`; regenerate it with \
         UPDATE_CONFIG_DOCS=1 cargo test --test it configuration::docs"
    );
}

#[tokio::test]
async fn a_blank_variable_counts_as_unset() {
    // PORT is checked before SHUTDOWN_TIMEOUT_SECS: had the blank PORT been parsed, the error
    // would name it.
    let (code, _, stderr) = run(
        &[],
        &[("PORT", ""), ("HOST", " "), ("SHUTDOWN_TIMEOUT_SECS", "0")],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SHUTDOWN_TIMEOUT_SECS")
            && !stderr.contains("PORT (")
            && !stderr.contains("HOST"),
        "blank PORT and HOST must count as unset, got: {stderr}"
    );
}
