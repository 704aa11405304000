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

use std::fmt::Write as _;

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
            write!(writer, "{message}")?;
        }
        if !visitor.fields.is_empty() {
            write!(writer, "{}", visitor.fields)?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, " {fields}")?;
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
        } else if value.is_empty() || value.contains([' ', '"', '=']) {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
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
