//! Failed-login throttling: `LOGIN_MAX_FAILURES` failures per username or per client address
//! within `LOGIN_WINDOW_SECS` block further attempts for that key until the window ends.
//!
//! Counting per username stops password guessing against one account from many addresses;
//! counting per address stops one client from trying many accounts. A successful login clears
//! the username's counter (not the address's). Fixed windows keep the state to one counter and
//! one deadline per key, which is also what the Redis variant stores.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::limits::RedisLoginThrottle;
use crate::cluster::redis::RedisError;

/// The keys a login attempt is counted under.
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    username: String,
    address: String,
}

impl AttemptKeys {
    /// Keys for a case-folded username and the client address.
    pub fn new(username_key: &str, address: IpAddr) -> Self {
        Self {
            username: format!("user:{username_key}"),
            address: format!("ip:{address}"),
        }
    }
}

/// Login attempts are blocked; retry after the given time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many failed logins; retry in {}s", retry_after.as_secs())]
pub struct Throttled {
    /// Time until the window that blocks the attempt ends.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    ends: Instant,
}

/// Why an attempt may not proceed.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// Too many failures for the username or address.
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
    /// Refuses the attempt if either key has used up its failures.
    pub async fn check(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        match self {
            Self::Local(local) => Ok(local.check(keys)?),
            Self::Redis(redis) => match redis.blocked(&[&keys.username, &keys.address]).await? {
                Some(retry_after) => Err(Throttled { retry_after }.into()),
                None => Ok(()),
            },
        }
    }

    /// Counts a failed attempt against both keys.
    pub async fn record_failure(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        match self {
            Self::Local(local) => {
                local.record_failure(keys);
                Ok(())
            }
            Self::Redis(redis) => Ok(redis
                .record_failure(&[&keys.username, &keys.address])
                .await?),
        }
    }

    /// Forgets the username's failures after a successful login.
    pub async fn record_success(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        match self {
            Self::Local(local) => {
                local.record_success(keys);
                Ok(())
            }
            Self::Redis(redis) => Ok(redis.clear(&keys.username).await?),
        }
    }
}

/// In-process throttle for embedded mode.
#[derive(Debug)]
pub struct LocalThrottle {
    max_failures: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl LocalThrottle {
    /// A throttle allowing `max_failures` per key per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses the attempt if either key has used up its failures.
    pub fn check(&self, keys: &AttemptKeys) -> Result<(), Throttled> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for key in [&keys.username, &keys.address] {
            if let Some(w) = windows.get(key) {
                if w.ends > now && w.failures >= self.max_failures {
                    return Err(Throttled {
                        retry_after: w.ends - now,
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against both keys.
    pub fn record_failure(&self, keys: &AttemptKeys) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, w| w.ends > now);
        }
        for key in [&keys.username, &keys.address] {
            let window = windows.entry(key.clone()).or_insert(Window {
                failures: 0,
                ends: now + self.window,
            });
            if window.ends <= now {
                *window = Window {
                    failures: 0,
                    ends: now + self.window,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
    }

    /// Forgets the username's failures after a successful login.
    pub fn record_success(&self, keys: &AttemptKeys) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.remove(&keys.username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_per_username_or_address() {
        let throttle = LocalThrottle::new(3, Duration::from_secs(60));
        let a = AttemptKeys::new("alice", "10.0.0.1".parse().expect("ip"));
        for _ in 0..3 {
            assert!(throttle.check(&a).is_ok());
            throttle.record_failure(&a);
        }
        assert!(
            throttle.check(&a).is_err(),
            "fourth attempt must be throttled"
        );
        // Same address, other user: the address key is exhausted too.
        let b = AttemptKeys::new("bob", "10.0.0.1".parse().expect("ip"));
        assert!(throttle.check(&b).is_err());
        // Other address, same user: the username key blocks it.
        let c = AttemptKeys::new("alice", "10.0.0.2".parse().expect("ip"));
        assert!(throttle.check(&c).is_err());
        // Unrelated user and address pass.
        let d = AttemptKeys::new("carol", "10.0.0.3".parse().expect("ip"));
        assert!(throttle.check(&d).is_ok());
    }

    #[test]
    fn windows_expire() {
        let throttle = LocalThrottle::new(1, Duration::from_millis(20));
        let a = AttemptKeys::new("alice", "10.0.0.1".parse().expect("ip"));
        throttle.record_failure(&a);
        assert!(throttle.check(&a).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.check(&a).is_ok());
    }
}
