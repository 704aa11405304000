//! Failed-login counters in this process: embedded mode; every decision is made under one
//! mutex (the rules are in the parent module).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::{Admission, AttemptKeys, LoginThrottle, ThrottleError, ThrottleLimits, Throttled};

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

    /// See [`LoginThrottle::admit`]; synchronous, as nothing here waits.
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

#[async_trait]
impl LoginThrottle for LocalThrottle {
    async fn admit(&self, keys: &AttemptKeys) -> Result<Admission, ThrottleError> {
        Ok(LocalThrottle::admit(self, keys)?)
    }

    async fn succeeded(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        LocalThrottle::succeeded(self, keys);
        Ok(())
    }

    async fn abandoned(&self, keys: &AttemptKeys) -> Result<(), ThrottleError> {
        LocalThrottle::abandoned(self, keys);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
