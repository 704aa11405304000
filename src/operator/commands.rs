//! Operator commands addressed to one instance of many, carried by Redis Pub/Sub.
//!
//! An operator's browser talks to whichever instance the load balancer picks, so "drain
//! web-2" must reach web-2 some other way. Every instance subscribes `OPS_CHANNEL` on the
//! adapter's resilient driver (which resubscribes after a Redis restart or failover) and acts
//! on the commands that name it. A command is fire-and-forget: the operator sees its effect in
//! the live view (the instance's row turns draining, then disappears).

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::Driver;

use crate::adapter::driver::ResilientDriver;
use crate::redis::RedisError;
use crate::state::AppState;

/// The Pub/Sub channel of operator commands.
pub const OPS_CHANNEL: &str = "roomcast-ops";

/// A command for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Start the graceful drain (as SIGTERM would).
    Drain {
        /// The instance that must drain.
        instance: String,
    },
    /// Some instance changed state (its drain started, or it left the registry): every
    /// instance pushes a fresh snapshot to its operators at once.
    Refresh,
}

/// Tells every instance's operator view that this instance changed state (it started or
/// ended a drain), so operators see it at once rather than at the next heartbeat.
pub async fn announce_change(cluster: &crate::cluster::Cluster) {
    if let Err(err) = send(&cluster.driver, &Command::Refresh).await {
        tracing::debug!(error = %err, "could not announce a state change to operators");
    }
}

/// Publishes `command` to every instance; the one it names (or all, for `Refresh`) acts on it.
pub async fn send(driver: &ResilientDriver, command: &Command) -> Result<(), RedisError> {
    let payload = serde_json::to_vec(command).unwrap_or_default();
    driver.publish(OPS_CHANNEL.to_owned(), payload).await
}

/// Acts on the commands addressed to this instance until its drain starts.
pub async fn listen(driver: ResilientDriver, app: AppState) {
    let mut messages = match driver.subscribe(OPS_CHANNEL.to_owned(), 16).await {
        Ok(messages) => messages,
        Err(err) => {
            tracing::error!(error = %err, "cannot subscribe to operator commands; drains from the admin API will not reach this instance");
            return;
        }
    };
    let me = app.config.instance_id.as_str().to_owned();
    loop {
        let item = tokio::select! {
            item = messages.next() => item,
            () = app.drain.started() => return,
        };
        let Some((_channel, payload)) = item else {
            return;
        };
        match serde_json::from_slice::<Command>(&payload) {
            Ok(Command::Drain { instance }) if instance == me => {
                tracing::info!("drain requested by an operator");
                app.drain.request();
            }
            Ok(Command::Drain { .. }) => {}
            Ok(Command::Refresh) => app.operator.refresh.notify_one(),
            Err(err) => tracing::debug!(error = %err, "ignored a malformed operator command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_command_is_tagged_json() {
        let command = Command::Drain {
            instance: "web-2".to_owned(),
        };
        let json = serde_json::to_string(&command).expect("serialise");
        assert_eq!(json, r#"{"command":"drain","instance":"web-2"}"#);
        assert_eq!(
            serde_json::from_str::<Command>(&json).expect("parse"),
            command
        );
    }
}
