//! The real binary: configuration errors, log format, and exit on signals.

use std::time::Duration;

use crate::harness::process::{RoomcastProcess, run_to_exit};

#[tokio::test]
async fn a_bad_value_exits_non_zero_naming_the_variable() {
    for (var, value) in [
        ("PORT", "http"),
        ("LOG_FORMAT", "xml"),
        ("SESSION_ENCRYPTION_KEY", "nope"),
    ] {
        let (code, output) = run_to_exit(&[(var, value)]).await;
        assert_ne!(code, Some(0), "{var}={value} must not start");
        assert!(
            output.contains(var),
            "error for {var}={value} must name it, got: {output}"
        );
        assert!(
            !output.contains("nope") || var != "SESSION_ENCRYPTION_KEY",
            "secrets are not echoed: {output}"
        );
    }
}

fn is_text_line(line: &str, instance: &str) -> bool {
    // [2026-10-03T20:00:00.000Z] [INFO] [web-1] message
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((ts, rest)) = rest.split_once("] [") else {
        return false;
    };
    let ts_ok = ts.len() == 24
        && ts.ends_with('Z')
        && ts.as_bytes()[10] == b'T'
        && ts.as_bytes()[19] == b'.';
    let Some((level, rest)) = rest.split_once("] [") else {
        return false;
    };
    let level_ok = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level);
    ts_ok && level_ok && rest.starts_with(&format!("{instance}] "))
}

#[tokio::test]
async fn text_logs_carry_timestamp_level_and_instance_and_sigterm_exits_zero() {
    let mut server =
        RoomcastProcess::start(&[("INSTANCE_ID", "web-test-1"), ("RUST_LOG", "debug")]).await;
    let res = reqwest::get(format!("{}/api/me", server.base))
        .await
        .expect("GET");
    assert_eq!(res.status(), 401);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "output:\n{}",
        server.output()
    );
    let lines = server.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listening addr=127.0.0.1:")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("http request")
            && l.contains("path=/api/me")
            && l.contains("status=401")
            && l.contains("request_id=")),
        "request log line with method, path, status, request id: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("drain complete")),
        "{lines:?}"
    );
    let foreign: Vec<_> = lines
        .iter()
        .filter(|l| !is_text_line(l, "web-test-1"))
        .collect();
    assert!(
        foreign.is_empty(),
        "every line (dependencies' too) must follow the format, these do not: {foreign:?}"
    );
}

#[tokio::test]
async fn json_logs_have_an_instance_id_field() {
    let mut server =
        RoomcastProcess::start(&[("INSTANCE_ID", "web-json-1"), ("LOG_FORMAT", "json")]).await;
    reqwest::get(format!("{}/api/rooms", server.base))
        .await
        .expect("GET");
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(15)).await, Some(0));
    let lines = server.lines();
    assert!(!lines.is_empty());
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(value["instance_id"], "web-json-1", "{line}");
        assert!(
            value["ts"].is_string() && value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""path":"/api/rooms""#) && l.contains(r#""status":401"#)),
        "{lines:?}"
    );
}

#[tokio::test]
async fn no_password_or_cookie_appears_in_the_logs() {
    let mut server = RoomcastProcess::start(&[("RUST_LOG", "trace")]).await;
    let client = crate::harness::browser();
    let password = "super-secret-password-xyz";
    let body = serde_json::json!({"username": "log_checker", "password": password});
    client
        .post(format!("{}/api/auth/register", server.base))
        .json(&body)
        .send()
        .await
        .expect("register");
    let res = client
        .post(format!("{}/api/auth/login", server.base))
        .json(&body)
        .send()
        .await
        .expect("login");
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.strip_prefix("roomcast.sid="))
        .expect("cookie")
        .to_owned();
    client
        .get(format!("{}/api/me", server.base))
        .send()
        .await
        .expect("me");
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(15)).await;
    let output = server.output();
    assert!(!output.contains(password), "password leaked into logs");
    assert!(!output.contains(&cookie), "session cookie leaked into logs");
    assert!(
        !output.contains("a-test-session-secret"),
        "session secret leaked into logs"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut server = RoomcastProcess::start(&[("SHUTDOWN_TIMEOUT_SECS", "60")]).await;
    // Hold a request open so the drain has something to wait for.
    let hold = tokio::spawn({
        let base = server.base.clone();
        async move {
            let _ = reqwest::get(format!("{base}/socket.io/?EIO=4&transport=polling")).await;
        }
    });
    server.signal("TERM");
    server
        .wait_for_line("drain started", Duration::from_secs(5))
        .await
        .expect("drain starts");
    server.signal("TERM");
    let code = server.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(
        code,
        Some(130),
        "second signal exits with 130; output:\n{}",
        server.output()
    );
    hold.abort();
}
