//! Operator credentials (`ADMIN_TOKEN`, `METRICS_TOKEN`), presented as an HTTP bearer token
//! or, for the operator view, as the `/admin` namespace's handshake `auth.token`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Whether `presented` is the configured token. Both are compared as SHA-256 digests in constant
/// time, so neither timing nor length leaks; an empty presentation never matches.
pub fn matches(expected: &Secret, presented: &str) -> bool {
    let equal: bool = Sha256::digest(presented.as_bytes())
        .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
        .into();
    !presented.is_empty() && equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = Secret::new("s3cret-token");
        assert!(matches(&token, "s3cret-token"));
        assert!(!matches(&token, "s3cret-toke"));
        assert!(!matches(&token, "s3cret-token "));
        assert!(!matches(&token, ""));
        assert!(!matches(&Secret::new(""), ""));
    }
}
