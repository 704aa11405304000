//! Who the user is: password hashing, failed-login throttling, and the session's user record.

pub mod password;
pub mod throttle;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::storage::users::User;

/// Session key under which the logged-in user is stored.
pub const SESSION_USER_KEY: &str = "user";
/// Session key for an anonymous visitor's analytics opt-out.
pub const SESSION_OPT_OUT_KEY: &str = "analytics_opted_out";

/// What a logged-in session holds about its user. Encrypted at rest in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// The account.
    pub user: User,
    /// When the login happened (epoch ms), for audits.
    pub logged_in_at: i64,
}
