//! Every client event has a limit: per-user buckets for `join`/`leave`/`resume` and `typing`,
//! a cap on rooms per socket, a bound on events in flight per socket, and a capped room list.
//! The floods are sent with the official socket.io-client (`tests/js/limits/flood.mjs`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestApp, run_node, spawn_app, spawn_app_with};

/// Runs one flood scenario against `app` and returns what the script printed.
async fn flood(app: &TestApp, scenario: &str, extra: &[(&str, &str)]) -> Value {
    let mut env = vec![
        ("ROOMCAST_URL", app.base.as_str()),
        ("LIMITS_SCENARIO", scenario),
    ];
    env.extend_from_slice(extra);
    let output = run_node(&["limits/flood.mjs"], &env, Duration::from_secs(120))
        .await
        .unwrap_or_else(|out| panic!("flood script {scenario} failed:\n{out}"));
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("flood script printed no result:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn count(tally: &Value, key: &str) -> u64 {
    tally[key].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn typing_join_and_resume_floods_get_rate_limited_acks_while_others_still_talk() {
    let app = spawn_app().await;
    let result = flood(&app, "events", &[]).await;

    for event in ["typing", "join", "resume"] {
        let tally = &result[event];
        assert!(
            count(tally, "rate_limited") > 0,
            "a flood of {event} should get rate_limited acks, got {tally}"
        );
        assert_eq!(
            count(tally, "no_ack"),
            0,
            "every {event} asked for an ack and must get one, got {tally}"
        );
    }
    // The default typing burst is 10 per user: far fewer than 300 are relayed.
    let typing_ok = count(&result["typing"], "ok");
    assert!(
        typing_ok <= 20,
        "at most the typing burst (plus refill) should pass, {typing_ok} did: {result}"
    );
    assert!(
        result["typing_relayed"].as_u64().unwrap_or(u64::MAX) <= typing_ok,
        "only accepted typing events are relayed: {result}"
    );
    // Joins stop at the burst or the room cap, whichever comes first.
    let joined = count(&result["join"], "ok");
    assert!(
        joined <= 60,
        "300 joins in a burst: {joined} accepted: {result}"
    );
    // Another user's messages were accepted and delivered during the flood.
    assert_eq!(
        count(&result["speaker_acks"], "ok"),
        5,
        "the bystander's messages must be accepted: {result}"
    );
    assert_eq!(
        result["speaker_delivered"], 5,
        "the bystander's messages must reach the room: {result}"
    );
}

#[tokio::test]
async fn the_51st_room_of_a_socket_is_refused_with_too_many_rooms() {
    let app = spawn_app().await;
    let result = flood(&app, "rooms", &[("JOINS", "51")]).await;
    let joins: Vec<&str> = result["joins"]
        .as_array()
        .expect("joins")
        .iter()
        .map(|v| v.as_str().unwrap_or("?"))
        .collect();
    assert!(
        joins[..50].iter().all(|j| *j == "ok"),
        "the first 50 joins succeed: {joins:?}"
    );
    assert_eq!(joins[50], "too_many_rooms", "the 51st: {joins:?}");
    assert_eq!(
        result["again"]["ok"], true,
        "joining a room the socket is in still works at the cap: {result}"
    );
    assert_eq!(result["left"]["ok"], true, "{result}");
    assert_eq!(
        result["after"]["ok"], true,
        "after a leave there is room for one more: {result}"
    );
}

#[tokio::test]
async fn messages_emitted_without_waiting_are_bounded_in_flight_and_all_answered() {
    let app = spawn_app_with(&[
        ("MESSAGE_RATE_PER_SEC", "100000"),
        ("MESSAGE_RATE_BURST", "100000"),
        ("MAX_EVENTS_IN_FLIGHT_PER_SOCKET", "4"),
    ])
    .await;
    let result = flood(&app, "in_flight", &[]).await;
    let acks = &result["acks"];
    assert_eq!(
        count(acks, "no_ack"),
        0,
        "no message goes unanswered: {result}"
    );
    assert!(
        count(acks, "rate_limited") > 0,
        "300 messages at once exceed 4 in flight: {result}"
    );
    assert!(count(acks, "ok") > 0, "{result}");
    assert!(
        result["messages"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains("in flight")))),
        "the refusal names the in-flight bound: {result}"
    );
    assert_eq!(
        result["in_order"], true,
        "accepted messages keep their send order: {result}"
    );
}

#[tokio::test]
async fn the_room_list_is_capped_however_many_rooms_have_members() {
    let app = spawn_app().await;
    app.signed_in_user().await;
    // 150 occupied rooms, as 3 users with 50 sockets' worth of rooms would make.
    for i in 0..150u32 {
        let room = roomcast::domain::RoomName::parse(&format!("occupied-{i}")).expect("room");
        app.state
            .presence
            .join(&room, roomcast::domain::UserId(i64::from(i % 3) + 1))
            .await
            .expect("presence join");
    }
    let body: Value = app.get("/api/rooms").await.json().await.expect("json");
    let listed = body["rooms"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 100, "the list stops at 100 rooms: {listed} listed");
    assert_eq!(body["total"], 150, "total counts every room");
    let body: Value = app
        .get("/api/rooms?limit=5")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["rooms"].as_array().map_or(0, Vec::len), 5, "{body}");
    let res = app.get("/api/rooms?limit=1000").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
