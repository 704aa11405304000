//! Command line: `<mode> --key value …`, parsed by hand (a handful of options).

use std::collections::HashMap;

/// Printed with every argument error.
pub const USAGE: &str = "usage: loadgen <ramp|idle|storm|drain|logins|http|echo-server|echo> [--key value]…\n\
  common: --targets http://h:p,… --pids 1,2,3 --cookie-name roomcast.sid --users 20\n\
  ramp:   --rooms 1 --members 1000 --senders-per-room 10 --start-rate 10 --max-rate 1000\n\
          --factor 2 --precision 0.07 --probe-rate 45 --half true --sender-rate 1\n\
          --step-secs 5 --grace-secs 3 --p99-limit-ms 100 --min-delivery 0.999 --max-steps 24\n\
  logins: --logins 1000 --concurrency 16 --settle-secs 3\n\
  idle/storm/drain: --connections N --concurrency 256\n\
  http/echo: --connections N --secs D; echo-server: --port P";

/// Parsed command line.
pub struct Args {
    pub mode: String,
    options: HashMap<String, String>,
}

impl Args {
    /// Parses `mode --key value …`.
    pub fn parse(mut raw: impl Iterator<Item = String>) -> Result<Self, String> {
        let mode = raw.next().ok_or("missing mode")?;
        let mut options = HashMap::new();
        while let Some(key) = raw.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {key}"))?
                .to_owned();
            let value = raw.next().ok_or_else(|| format!("--{key} needs a value"))?;
            options.insert(key, value);
        }
        Ok(Self { mode, options })
    }

    /// A string option with a default.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.options
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    /// A numeric option with a default.
    pub fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.options.get(key) {
            Some(value) => value
                .parse()
                .map_err(|_| format!("--{key}: not a number: {value}")),
            None => Ok(default),
        }
    }

    /// A comma-separated list option (empty when absent).
    pub fn list<T: std::str::FromStr>(&self, key: &str) -> Result<Vec<T>, String> {
        match self.options.get(key) {
            Some(value) => value
                .split(',')
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.trim()
                        .parse()
                        .map_err(|_| format!("--{key}: bad item {item}"))
                })
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    /// The server base URLs (`--targets`), at least one.
    pub fn targets(&self) -> Result<Vec<String>, String> {
        let targets: Vec<String> = self.list("targets")?;
        if targets.is_empty() {
            return Err("--targets is required".into());
        }
        Ok(targets)
    }
}
