//! `/api/rooms*`: the room list and message history.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::AuthUser;
use crate::domain::RoomName;
use crate::error_code::ErrorCode;
use crate::state::AppState;

/// Rooms listed from history, besides the ones with members; also the most rooms one
/// listing returns (`?limit=`, 1–100), so the answer stays small however many rooms exist.
const LISTED_ROOMS: u32 = 100;
/// Largest history page.
pub const MAX_PAGE: u32 = 100;

/// Query of the room list.
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /api/rooms?limit=` → `{rooms: [{name, members, last_message_at}], total}`: rooms with
/// members and recently active rooms, busiest first, at most `limit` (default and maximum
/// 100) of them; `total` counts every room considered.
pub async fn list(
    State(app): State<AppState>,
    _auth: AuthUser,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let limit = query.limit.unwrap_or(LISTED_ROOMS);
    if !(1..=LISTED_ROOMS).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "limit must be between 1 and 100",
        ));
    }
    let mut rooms: BTreeMap<String, (usize, Option<i64>)> = BTreeMap::new();
    for activity in app.db.active_rooms(LISTED_ROOMS).await? {
        rooms.insert(activity.room, (0, Some(activity.last_message_at)));
    }
    for (room, members) in app.presence.rooms().await? {
        rooms.entry(room).or_insert((0, None)).0 = members;
    }
    let mut list: Vec<_> = rooms.into_iter().collect();
    list.sort_by(|a, b| {
        b.1.0
            .cmp(&a.1.0)
            .then(b.1.1.cmp(&a.1.1))
            .then(a.0.cmp(&b.0))
    });
    let total = list.len();
    let rooms: Vec<Value> = list
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(name, (members, last))| json!({"name": name, "members": members, "last_message_at": last}))
        .collect();
    Ok(Json(json!({"rooms": rooms, "total": total})))
}

/// Query of a history page.
#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/rooms/{room}/messages?before=&limit=` → `{messages}`, newest first.
pub async fn messages(
    State(app): State<AppState>,
    _auth: AuthUser,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = RoomName::parse(&room)?;
    let Query(query) =
        query.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "limit must be between 1 and 100",
        ));
    }
    let messages = app.db.messages_before(&room, query.before, limit).await?;
    Ok(Json(json!({"messages": messages})))
}
