//! Log output: one JSON object per line (`--log-format json`, what the
//! Deployment runs) or human text.
//!
//! The JSON lines come from [`JsonLines`] rather than tracing-subscriber's own
//! JSON format. That one serializes through serde_json into an `io::Write`
//! adaptor that re-checks UTF-8 on every fragment it is handed, and its
//! timestamp goes through `fmt` digit by digit: ~24k instructions for the
//! per-review decision line (callgrind, BENCHMARKS.md), a fifth of a whole
//! review. Same shape: `timestamp`, `level`, the event's fields flattened
//! (`message` among them), `span` (the current span's name, if any), `target`.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `level`, to stderr.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.event_format(JsonLines).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A [`FormatEvent`] writing each event as one JSON object on one line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // RFC 3339 in UTC with microseconds, as tracing-subscriber writes it.
        write!(
            writer,
            r#"{{"timestamp":"{:.6}","level":"{}""#,
            jiff::Timestamp::now(),
            meta.level()
        )?;
        let mut fields = JsonFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(span) = ctx.lookup_current() {
            writer.write_str(r#","span":"#)?;
            write_json_str(&mut writer, span.name())?;
        }
        writer.write_str(r#","target":"#)?;
        write_json_str(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

struct JsonFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result =
                write_key(self.writer, field.name(), false).and_then(|()| value(self.writer));
        }
    }

    /// A string field: `,"name":"value"` in three writes when the value needs
    /// no escaping (every field of a decision line), not eight.
    fn string_entry(&mut self, field: &Field, value: &str) {
        if crate::inject::patch::needs_escaping(value) {
            self.entry(field, |w| write_json_str(w, value));
        } else if self.result.is_ok() {
            self.result = write_key(self.writer, field.name(), true)
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'));
        }
    }
}

/// `,"name":` (and the opening quote of a string value) in three writes
/// rather than five or six: each write is a dynamic call into the line's
/// buffer, and single characters of a dozen fields were ~1.8k instructions
/// per decision line (callgrind). (Gluing the key in a stack buffer first
/// cost more: its UTF-8 check is ~90 instructions.)
fn write_key(w: &mut Writer<'_>, name: &str, quote: bool) -> fmt::Result {
    if crate::inject::patch::needs_escaping(name) {
        w.write_char(',')?;
        write_json_str(w, name)?;
        w.write_char(':')?;
        return if quote { w.write_char('"') } else { Ok(()) };
    }
    w.write_str(",\"")?;
    w.write_str(name)?;
    w.write_str(if quote { "\":\"" } else { "\":" })
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string_entry(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.entry(field, |w| write!(w, "{value}"));
        } else {
            // JSON has no NaN or infinity.
            self.entry(field, |w| write_json_str(w, &value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%display` values and the message arrive here; they are rare
        // outside the message, which is usually a literal.
        let text = format!("{value:?}");
        self.string_entry(field, &text);
    }
}

/// `s` as a JSON string: written as is when nothing in it needs escaping
/// (every field of a normal decision line), else escaped by serde_json, the
/// same escaper the patch uses.
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    if crate::inject::patch::needs_escaping(s) {
        // Serializing a &str cannot fail.
        w.write_str(&serde_json::to_string(s).unwrap_or_default())
    } else {
        w.write_char('"')?;
        w.write_str(s)?;
        w.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Long and dotted field names come out whole.
    #[test]
    fn long_and_dotted_field_names_round_trip() {
        let lines = lines_of(|| {
            tracing::info!(
                a_field_name_much_longer_than_the_sixty_four_byte_key_buffer_of_write_key = "long",
                a_field_name_much_longer_than_the_sixty_four_byte_key_buffer_of_write_key_n = 3u64,
                "dotted.name" = "d",
                "m"
            );
        });
        let line = &lines[0];
        assert_eq!(
            line["a_field_name_much_longer_than_the_sixty_four_byte_key_buffer_of_write_key"],
            "long"
        );
        assert_eq!(
            line["a_field_name_much_longer_than_the_sixty_four_byte_key_buffer_of_write_key_n"],
            3
        );
        assert_eq!(line["dotted.name"], "d");
        assert_eq!(line["message"], "m");
    }

    #[test]
    fn every_field_type_round_trips_through_json() {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} unicode é ✓";
        let lines = lines_of(|| {
            tracing::info!(
                uid = "u-1",
                tricky,
                count = 42u64,
                delta = -7i64,
                ratio = 0.5f64,
                nan = f64::NAN,
                ok = true,
                shown = %"display value",
                debugged = ?vec!["a", "b"],
                "admission decision"
            );
            tracing::warn!("formatted {}", "message");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "admission decision");
        assert_eq!(first["uid"], "u-1");
        assert_eq!(first["tricky"], tricky);
        assert_eq!(first["count"], 42);
        assert_eq!(first["delta"], -7);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["nan"], "NaN");
        assert_eq!(first["ok"], true);
        assert_eq!(first["shown"], "display value");
        assert_eq!(first["debugged"], r#"["a", "b"]"#);
        assert_eq!(first["target"], "otel_injector::logging::tests");
        let timestamp = first["timestamp"].as_str().expect("timestamp");
        assert!(
            timestamp.parse::<jiff::Timestamp>().is_ok() && timestamp.ends_with('Z'),
            "{timestamp}"
        );
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["message"], "formatted message");
    }

    #[test]
    fn the_current_span_is_named() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("watch");
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(lines[0]["span"], "watch");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write_json_str(&mut out, "a\u{1}b\"").expect("write");
        assert_eq!(out, r#""a\u0001b\"""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).expect("json"),
            "a\u{1}b\""
        );
    }
}
