//! Failed-login throttling, exact under concurrency and fair behind a shared proxy.
//!
//! Every attempt is counted *before* its password is hashed, in one atomic step that also
//! decides whether the attempt may go ahead (a Lua script in Redis, one mutex here). Parallel
//! guesses therefore cannot slip past the limit: of 60 concurrent wrong passwords for one
//! account, exactly `LOGIN_MAX_FAILURES` are checked and the rest get `429`.
//!
//! Three counters, all fixed windows of `LOGIN_WINDOW_SECS` starting at the first attempt:
//!
//! - **username** (hard, `LOGIN_MAX_FAILURES`): stops guessing one account's password from
//!   many addresses. At the limit, every attempt for the username is refused unchecked.
//! - **address + username** (hard, `LOGIN_MAX_FAILURES`): the same limit for one address
//!   against one account. A successful login clears the username counter and only the
//!   successful address's pair, so a guesser cannot use the owner's logins elsewhere to reset
//!   its own count.
//! - **address** (soft, `LOGIN_MAX_FAILURES_PER_IP`): many users share one address behind a
//!   NAT or a proxy, so the address limit never refuses an attempt unchecked. Over it, the
//!   password is still checked and a correct one logs in; a wrong one gets `429` instead of
//!   `401`, telling the client to slow down.
//!
//! An attempt counts as a failure until it succeeds: a success clears the hard counters and
//! gives the address its attempt back, and an attempt whose password could not be checked at
//! all (the hasher was overloaded) gives back every count it took.
//!
//! The counters live in this process in embedded mode (`local`, one mutex) and in Redis in
//! cluster mode (`redis`, Lua scripts); which one is decided once, at start (`app.rs`).

pub mod local;
pub mod redis;

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::redis::RedisError;

/// The keys a login attempt is counted under.
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    /// The case-folded username.
    pub(crate) username: String,
    /// The client address.
    pub(crate) address: String,
}

impl AttemptKeys {
    /// Keys for a case-folded username and the client address.
    pub fn new(username_key: &str, address: IpAddr) -> Self {
        Self {
            username: username_key.to_owned(),
            address: address.to_string(),
        }
    }

    fn local_username(&self) -> String {
        format!("user:{}", self.username)
    }

    fn local_pair(&self) -> String {
        format!("pair:{}|{}", self.address, self.username)
    }

    fn local_address(&self) -> String {
        format!("ip:{}", self.address)
    }
}

/// The limits of the three counters.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Attempts per username, and per address and username, in a window.
    pub per_username: u32,
    /// Attempts per address in a window before wrong passwords get `429`.
    pub per_address: u32,
    /// Length of a window, from its first attempt.
    pub window: Duration,
}

/// Login attempts are blocked; retry after the given time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many failed logins; retry in {}s", retry_after.as_secs())]
pub struct Throttled {
    /// Time until the window that blocks the attempt ends.
    pub retry_after: Duration,
}

/// What the throttle decided about an attempt it has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password; a wrong one is an ordinary failure.
    Open,
    /// The address is over its soft limit: check the password, and answer a wrong one with
    /// `429` and this delay instead of `401`.
    AddressOverLimit {
        /// Time until the address's window ends.
        retry_after: Duration,
    },
}

/// Why an attempt may not proceed.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// Too many failures for the username, or for this address and username.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// The shared counters (Redis) cannot be read.
    #[error("login throttle unavailable: {0}")]
    Unavailable(#[from] RedisError),
}

/// The failed-login throttle, wherever its counters live.
#[async_trait]
pub trait LoginThrottle: Send + Sync + std::fmt::Debug {
    /// Counts the attempt, or refuses it uncounted when the username (or this address's
    /// attempts at it) is at its limit. Call before the password is checked.
    async fn admit(&self, keys: &AttemptKeys) -> Result<Admission, ThrottleError>;

    /// The password was right: clears the username's and this pair's counts and gives the
    /// address its attempt back.
    async fn succeeded(&self, keys: &AttemptKeys) -> Result<(), ThrottleError>;

    /// The password could not be checked (not a guess): gives back every count the attempt took.
    async fn abandoned(&self, keys: &AttemptKeys) -> Result<(), ThrottleError>;
}
