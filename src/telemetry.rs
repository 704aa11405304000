//! Logging that says which instance wrote each line.
//!
//! A global `tracing` subscriber with our own event formatter, so that every line, including
//! lines from dependencies (sqlx, hyper, socketioxide), carries the instance id:
//!
//! - text: `[2026-10-03T20:00:00.000Z] [INFO] [web-1] listening addr=0.0.0.0:3000`
//! - json: `{"ts":"…","level":"INFO","instance_id":"web-1","target":"…","message":"listening","addr":"…"}`
//!
//! Fields of the enclosing spans (for example the request id) are appended after the event's
//! own fields. The level comes from `RUST_LOG` (default `info`).
//!
//! Log lines may carry what clients sent (paths, origins, event names). In text format every
//! control character is escaped (`\n`, `\u{1b}`, …) and a value with spaces, quotes or `=` is
//! written as a quoted string, so a client cannot forge a line or a field; JSON is escaped by
//! construction. `Throttled` lets a log line that clients can trigger at will be written at
//! most once per interval, with a count of what it stood for.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;
use crate::instance::InstanceId;

/// Installs the global subscriber. Call once, before anything logs; later calls are no-ops,
/// which keeps in-process tests that build several apps from fighting over it.
pub fn init(format: LogFormat, instance: &InstanceId) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(InstanceFormat::text(instance))
                    .with_writer(std::io::stdout),
            )
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .fmt_fields(JsonFields::new())
                    .event_format(InstanceFormat::json(instance))
                    .with_writer(std::io::stdout),
            )
            .try_init(),
    };
    // A subscriber is already installed (a second app in the same test process): keep it.
    drop(result);
}

/// Event formatter that stamps the instance id on every line.
pub struct InstanceFormat {
    instance: String,
    json: bool,
}

impl InstanceFormat {
    fn text(instance: &InstanceId) -> Self {
        Self {
            instance: instance.to_string(),
            json: false,
        }
    }
    fn json(instance: &InstanceId) -> Self {
        Self {
            instance: instance.to_string(),
            json: true,
        }
    }
}

fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_default()
}

impl<S, N> FormatEvent<S, N> for InstanceFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if self.json {
            let mut visitor = JsonVisitor::default();
            event.record(&mut visitor);
            let mut object = serde_json::Map::new();
            object.insert("ts".into(), timestamp().into());
            object.insert("level".into(), meta.level().as_str().into());
            object.insert("instance_id".into(), self.instance.clone().into());
            object.insert("target".into(), meta.target().into());
            object.insert(
                "message".into(),
                visitor.message.take().unwrap_or_default().into(),
            );
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    let extensions = span.extensions();
                    let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                        continue;
                    };
                    if let Ok(serde_json::Value::Object(map)) =
                        serde_json::from_str::<serde_json::Value>(fields)
                    {
                        object.extend(map);
                    }
                }
            }
            object.extend(visitor.fields);
            let line = serde_json::to_string(&object).map_err(|_| std::fmt::Error)?;
            return writeln!(writer, "{line}");
        }

        write!(
            writer,
            "[{}] [{}] [{}] ",
            timestamp(),
            meta.level(),
            self.instance
        )?;
        let mut visitor = TextVisitor::default();
        event.record(&mut visitor);
        let message = visitor.message.take().unwrap_or_default();
        if message.is_empty() {
            write!(writer, "{}", meta.target())?;
        } else {
            write!(writer, "{}", escape_controls(&message))?;
        }
        if !visitor.fields.is_empty() {
            write!(writer, "{}", visitor.fields)?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, " {}", escape_controls(fields))?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// Collects `message` apart from ` key=value` pairs; quotes values with spaces.
#[derive(Default)]
struct TextVisitor {
    message: Option<String>,
    fields: String,
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.push_value(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            // `%value` arrives here as its Display text, unquoted: quote it like a string
            // when it needs it. `?value` text is already quoted where its type wants it.
            let text = format!("{value:?}");
            self.push_value(field.name(), &text);
        }
    }
}

impl TextVisitor {
    fn push_value(&mut self, name: &str, value: &str) {
        let needs_quotes = value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '=')
            || (value.contains('"') && !is_quoted(value));
        if needs_quotes {
            let _ = write!(self.fields, " {name}={value:?}");
        } else {
            let _ = write!(self.fields, " {name}={value}");
        }
    }
}

/// Whether `value` is one Debug-quoted string (`"…"` with its inner quotes escaped).
fn is_quoted(value: &str) -> bool {
    value.len() >= 2
        && value.starts_with('"')
        && value.ends_with('"')
        && !value[1..value.len() - 1]
            .replace("\\\\", "")
            .replace("\\\"", "")
            .contains('"')
}

/// `text` with control characters escaped, so it cannot break the line it is written on.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A log line that clients can trigger at will (refused requests and the like), written at
/// most once per interval: `hit` says whether to write it now, and how many hits (this one
/// included) it stands for. Cheap when suppressed: one atomic increment and a lock held for a
/// comparison.
#[derive(Debug)]
pub struct Throttled {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    hits: AtomicU64,
}

impl Throttled {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            hits: AtomicU64::new(0),
        }
    }

    /// Counts a hit; `Some(n)` when the line is due, `n` being the hits since the last line.
    pub fn hit(&self) -> Option<u64> {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            return None;
        }
        *last = Some(now);
        Some(self.hits.swap(0, Ordering::Relaxed))
    }
}

/// Collects fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for JsonVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_break_a_line() {
        let mut visitor = TextVisitor::default();
        visitor.push_value("path", "/a\n[2026-01-01] [INFO] forged");
        visitor.push_value("plain", "abc");
        assert!(!visitor.fields.contains('\n'), "{}", visitor.fields);
        assert!(visitor.fields.contains("plain=abc"), "{}", visitor.fields);
        assert_eq!(escape_controls("a\u{1b}[31m"), "a\\u{1b}[31m");
    }

    #[test]
    fn a_throttled_line_is_due_once_per_interval_and_counts_what_it_skipped() {
        let throttled = Throttled::new(Duration::from_secs(3600));
        assert_eq!(throttled.hit(), Some(1));
        assert_eq!(throttled.hit(), None);
        assert_eq!(throttled.hit(), None);
        *throttled.last.lock().expect("lock") = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(throttled.hit(), Some(3));
    }
}
