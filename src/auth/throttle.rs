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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::limits::RedisLoginThrottle;
use crate::cluster::redis::RedisError;

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

/// The failed-login throttle: in this process, or shared through Redis.
#[derive(Debug)]
pub enum LoginThrottle {
    /// Embedded mode.
    Local(LocalThrottle),
    /// Cluster mode: counters shared by every instance.
    Redis(RedisLoginThrottle),
}

impl LoginThrottle {
    /// Counts the attempt, or refuses it uncounted when the username (or this address's
    /// attempts at it) is at its limit. Call before the password is checked.
    pub async fn admit(&self, keys: &AttemptKeys) -> Result<Admission, ThrottleError> {
        match self {
            Self::Local(local) => Ok(local.admit(keys)?),
            Self::Redis(redis) => redis.admit(keys).await,
        }
    }

    /// The password was right: clears the username's and this pair's counts and gives the
    /// address its attempt back.
    pub async fn succeeded(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        match self {
            Self::Local(local) => {
                local.succeeded(keys);
                Ok(())
            }
            Self::Redis(redis) => Ok(redis.succeeded(keys).await?),
        }
    }

    /// The password could not be checked (not a guess): gives back every count the attempt took.
    pub async fn abandoned(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        match self {
            Self::Local(local) => {
                local.abandoned(keys);
                Ok(())
            }
            Self::Redis(redis) => Ok(redis.abandoned(keys).await?),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    attempts: u32,
    ends: Instant,
}

/// In-process throttle for embedded mode; every decision is made under one mutex.
#[derive(Debug)]
pub struct LocalThrottle {
    limits: ThrottleLimits,
    windows: Mutex<HashMap<String, Window>>,
}

/// Live windows kept before expired ones are swept.
const SWEEP_ABOVE: usize = 100_000;

impl LocalThrottle {
    /// A throttle with the given limits.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`LoginThrottle::admit`].
    pub fn admit(&self, keys: &AttemptKeys) -> Result<Admission, Throttled> {
        let now = Instant::now();
        let mut windows = self.lock();
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| w.ends > now);
        }
        let hard = [keys.local_username(), keys.local_pair()];
        let blocked = hard
            .iter()
            .filter_map(|key| windows.get(key))
            .filter(|w| w.ends > now && w.attempts >= self.limits.per_username)
            .map(|w| w.ends - now)
            .max();
        if let Some(retry_after) = blocked {
            return Err(Throttled { retry_after });
        }
        let mut count = |key: String| {
            let window = windows.entry(key).or_insert(Window {
                attempts: 0,
                ends: now + self.limits.window,
            });
            if window.ends <= now {
                *window = Window {
                    attempts: 0,
                    ends: now + self.limits.window,
                };
            }
            window.attempts = window.attempts.saturating_add(1);
            *window
        };
        for key in hard {
            count(key);
        }
        let address = count(keys.local_address());
        if address.attempts > self.limits.per_address {
            Ok(Admission::AddressOverLimit {
                retry_after: address.ends - now,
            })
        } else {
            Ok(Admission::Open)
        }
    }

    /// See [`LoginThrottle::succeeded`].
    pub fn succeeded(&self, keys: &AttemptKeys) {
        let mut windows = self.lock();
        windows.remove(&keys.local_username());
        windows.remove(&keys.local_pair());
        refund(&mut windows, &keys.local_address());
    }

    /// See [`LoginThrottle::abandoned`].
    pub fn abandoned(&self, keys: &AttemptKeys) {
        let mut windows = self.lock();
        for key in [
            keys.local_username(),
            keys.local_pair(),
            keys.local_address(),
        ] {
            refund(&mut windows, &key);
        }
    }
}

fn refund(windows: &mut HashMap<String, Window>, key: &str) {
    if let Some(window) = windows.get_mut(key) {
        window.attempts = window.attempts.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_username: u32, per_address: u32) -> LocalThrottle {
        LocalThrottle::new(ThrottleLimits {
            per_username,
            per_address,
            window: Duration::from_secs(60),
        })
    }

    fn keys(user: &str, ip: &str) -> AttemptKeys {
        AttemptKeys::new(user, ip.parse().expect("ip"))
    }

    #[test]
    fn the_username_limit_holds_from_every_address() {
        let throttle = throttle(3, 100);
        for i in 0..3 {
            assert_eq!(
                throttle.admit(&keys("alice", &format!("10.0.0.{i}"))).ok(),
                Some(Admission::Open)
            );
        }
        assert!(throttle.admit(&keys("alice", "10.0.0.9")).is_err());
        assert_eq!(
            throttle.admit(&keys("bob", "10.0.0.1")).ok(),
            Some(Admission::Open),
            "another user from a guessing address is not refused"
        );
    }

    #[test]
    fn the_address_limit_is_soft() {
        let throttle = throttle(10, 2);
        assert_eq!(
            throttle.admit(&keys("a1", "10.0.0.1")).ok(),
            Some(Admission::Open)
        );
        assert_eq!(
            throttle.admit(&keys("a2", "10.0.0.1")).ok(),
            Some(Admission::Open)
        );
        assert!(matches!(
            throttle.admit(&keys("a3", "10.0.0.1")),
            Ok(Admission::AddressOverLimit { .. })
        ));
    }

    #[test]
    fn a_success_clears_only_its_own_pair() {
        let throttle = throttle(3, 100);
        for _ in 0..2 {
            throttle.admit(&keys("alice", "10.0.0.66")).expect("open");
        }
        // The owner logs in from elsewhere: the username count is cleared ...
        throttle.admit(&keys("alice", "10.0.0.1")).expect("open");
        throttle.succeeded(&keys("alice", "10.0.0.1"));
        // ... but the guesser's pair still has two, so its third attempt is its last.
        throttle.admit(&keys("alice", "10.0.0.66")).expect("open");
        assert!(throttle.admit(&keys("alice", "10.0.0.66")).is_err());
    }

    #[test]
    fn an_abandoned_attempt_is_given_back() {
        let throttle = throttle(1, 100);
        throttle.admit(&keys("alice", "10.0.0.1")).expect("open");
        throttle.abandoned(&keys("alice", "10.0.0.1"));
        assert!(throttle.admit(&keys("alice", "10.0.0.1")).is_ok());
    }

    #[test]
    fn windows_expire() {
        let throttle = LocalThrottle::new(ThrottleLimits {
            per_username: 1,
            per_address: 1,
            window: Duration::from_millis(20),
        });
        let a = keys("alice", "10.0.0.1");
        throttle.admit(&a).expect("open");
        assert!(throttle.admit(&a).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.admit(&a).is_ok());
    }
}
