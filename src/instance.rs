//! Instance identity.
//!
//! Behind a load balancer, "which instance answered?" is the first question of every incident.
//! The id is stamped on every response (`X-Instance-Id`), every log line and every broadcast
//! message, so it must be short, printable and safe as an HTTP header value.

use std::fmt;
use std::sync::Arc;

use rand::Rng;

/// The identity of this process in the cluster.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// `<hostname>-<pid>-<6 random hex>`: unique across restarts and hosts, readable in logs.
    pub fn generate() -> Self {
        let host: String = hostname()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let suffix: u32 = rand::thread_rng().gen_range(0..0x100_0000);
        Self(format!("{host}-{}-{suffix:06x}", std::process::id()).into())
    }

    /// Accepts an operator-chosen id: 1–64 visible ASCII characters without spaces.
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok =
            !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(value.into()))
        } else {
            Err("must be 1-64 visible ASCII characters without spaces".to_owned())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The machine's hostname, or `localhost` when it cannot be read.
pub fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_header_safe_and_distinct() {
        let a = InstanceId::generate();
        let b = InstanceId::generate();
        assert_ne!(a, b);
        assert!(
            InstanceId::parse(a.as_str()).is_ok(),
            "generated id {a} must pass its own validation"
        );
        assert!(a.as_str().contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn rejects_ids_that_cannot_be_a_header() {
        assert!(InstanceId::parse("").is_err());
        assert!(InstanceId::parse("a b").is_err());
        assert!(InstanceId::parse("é").is_err());
        assert!(InstanceId::parse(&"x".repeat(65)).is_err());
        assert!(InstanceId::parse("web-1").is_ok());
    }
}
