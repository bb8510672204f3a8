//! The log pipeline: a level filter from `RUST_LOG`, a pretty or JSON
//! format, and a writer that never blocks the service.
//!
//! JSON lines are flat objects: `timestamp`, `level`, `target`, `message`,
//! the event's fields and the fields of every span it happened in (so a
//! request's `request_id` is a top-level field of each line the request
//! caused, socket events included). Values print with `Display`; numbers
//! stay numbers.
//!
//! Lines are handed to a thread that writes them to stdout through a
//! bounded queue. When stdout does not keep up (a full pipe, a reader that
//! stopped reading) lines are dropped and counted
//! (`switchboard_log_lines_dropped_total`) rather than holding up a request
//! or the shutdown.

use std::io::Write;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::traces::{TraceError, Traces};
use crate::config::{LogFormat, TraceConfig};

/// The variable that refines the log level.
pub const ENV_RUST_LOG: &str = "RUST_LOG";
/// The filter without `RUST_LOG`.
const DEFAULT_FILTER: &str = "info,tower_http=info,redb=warn";
/// Lines waiting for stdout; beyond this they are dropped.
const QUEUE_LINES: usize = 8192;
/// How long the exit waits for queued lines to reach stdout.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Log lines dropped because stdout did not keep up, process-wide.
pub(crate) fn dropped_lines() -> Counter {
    DROPPED.clone()
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Traces(#[from] TraceError),
    #[error(
        "RUST_LOG is not a valid log filter ({0}); use a level such as info, or directives such as info,switchboard=debug"
    )]
    InvalidFilter(String),
}

/// The filter `RUST_LOG` asks for; an unset or empty `RUST_LOG` means the
/// default, an invalid one is refused rather than ignored.
pub fn filter_from(value: Option<&str>) -> Result<EnvFilter, LogError> {
    match value.map(str::trim) {
        None | Some("") => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(directives) => EnvFilter::builder()
            .parse(directives)
            .map_err(|e| LogError::InvalidFilter(e.to_string())),
    }
}

/// Installs the global subscriber. Keep the guard until the process ends:
/// dropping it waits (briefly) for queued lines to be written, and
/// [`LogGuard::finish`] also sends the last spans. `RUST_LOG`, when set and
/// not empty, wins over `level` (the `SWITCHBOARD_LOG_LEVEL` setting); the
/// [`LogLevel`] answered changes the filter of the running process
/// (SIGHUP). With `traces`, spans also go to an OTLP collector, filtered on
/// their own: the log level does not decide what is traced.
pub fn init_logging(
    format: LogFormat,
    level: &str,
    traces: Option<&TraceConfig>,
) -> Result<(LogGuard, LogLevel), LogError> {
    let value = match std::env::var(ENV_RUST_LOG) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(LogError::InvalidFilter("it is not UTF-8".to_owned()));
        }
    };
    let filter = match value.as_deref().map(str::trim) {
        Some(directives) if !directives.is_empty() => filter_from(Some(directives))?,
        _ => filter_from(Some(level))?,
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let (writer, mut guard) = non_blocking();
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => SpanFieldsLayer
            .and_then(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer(writer),
            )
            .with_filter(filter)
            .boxed(),
    };
    let spans = match traces {
        Some(config) => {
            let (layer, traces) = super::traces::layer(config)?;
            guard.traces = Some(traces);
            Some(layer)
        }
        None => None,
    };
    // A second init (tests start many servers in one process) is harmless.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    let level = LogLevel {
        handle,
        current: Arc::new(std::sync::Mutex::new(level.to_owned())),
    };
    Ok((guard, level))
}

/// `RUST_LOG` when set and not empty (as with every setting, empty is
/// unset).
fn rust_log() -> Option<String> {
    std::env::var(ENV_RUST_LOG)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The running process's log filter, changed on SIGHUP.
#[derive(Clone)]
pub struct LogLevel {
    handle: tracing_subscriber::reload::Handle<EnvFilter, Registry>,
    current: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel").finish_non_exhaustive()
    }
}

impl LogLevel {
    /// Applies `level` (unless `RUST_LOG` is set, which wins). Answers what
    /// changed, or `None` when it is the filter already in force.
    pub fn set(&self, level: &str) -> Result<Option<String>, String> {
        if rust_log().is_some() {
            return Ok(None);
        }
        let mut current = self.current.lock().map_err(|_| "poisoned".to_owned())?;
        if *current == level {
            return Ok(None);
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())?;
        let change = format!("{} -> {level}", *current);
        *current = level.to_owned();
        Ok(Some(change))
    }
}

/// One JSON log line written straight to stdout, for what happens before
/// the subscriber exists (an invalid configuration or `RUST_LOG`).
pub fn json_line(level: &str, message: &str, fields: &[(&str, &str)]) -> String {
    let mut map = Map::new();
    for (k, v) in fields {
        map.insert((*k).to_owned(), Value::from(*v));
    }
    map.insert("timestamp".to_owned(), Value::from(timestamp()));
    map.insert("level".to_owned(), Value::from(level));
    map.insert("target".to_owned(), Value::from("switchboard"));
    map.insert("message".to_owned(), Value::from(message));
    Value::Object(map).to_string()
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

// ---- the writer -------------------------------------------------------

enum Out {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Hands each formatted event to the writer thread, or drops it.
#[derive(Clone, Debug)]
struct NonBlocking {
    queue: SyncSender<Out>,
}

/// Waits for the queued lines on drop (at most [`FLUSH_TIMEOUT`]).
#[derive(Debug)]
pub struct LogGuard {
    queue: SyncSender<Out>,
    traces: Option<Traces>,
}

impl LogGuard {
    /// Sends the spans still queued, if traces are on; call it before the
    /// runtime ends.
    pub async fn finish(&mut self) {
        if let Some(traces) = self.traces.take() {
            traces.shutdown().await;
        }
    }
}

fn non_blocking() -> (NonBlocking, LogGuard) {
    let (queue, lines) = mpsc::sync_channel::<Out>(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn(move || {
            for out in lines {
                let mut stdout = std::io::stdout().lock();
                match out {
                    // A dead pipe fails the write: the line is lost, the
                    // service goes on.
                    Out::Line(line) => {
                        let _ = stdout.write_all(&line);
                    }
                    Out::Flush(done) => {
                        let _ = stdout.flush();
                        let _ = done.send(());
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread every line is dropped (and counted); say why
        // once where it may still be seen.
        let _ = writeln!(std::io::stderr(), "cannot start the log writer: {e}");
    }
    (
        NonBlocking {
            queue: queue.clone(),
        },
        LogGuard {
            queue,
            traces: None,
        },
    )
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (done, flushed) = mpsc::channel();
        if self.queue.try_send(Out::Flush(done)).is_ok() {
            let _ = flushed.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer {
            line: Vec::new(),
            queue: self.queue.clone(),
        }
    }
}

/// One event's text, queued whole when the formatter is done with it.
#[derive(Debug)]
pub struct LineBuffer {
    line: Vec<u8>,
    queue: SyncSender<Out>,
}

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Out::Line(line))
        {
            DROPPED.inc();
        }
    }
}

// ---- the JSON format --------------------------------------------------

/// A span's fields as JSON values, kept in the span's extensions so that
/// every event inside it can carry them.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut JsonVisitor(&mut fields.0));
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }
}

/// Formats an event as one flat JSON object.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
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
        let mut map = Map::new();
        // Outer spans first, so an inner span's field of the same name wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    map.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut JsonVisitor(&mut map));
        // Events bridged from the `log` crate carry their origin as fields.
        let target = match map.remove("log.target") {
            Some(Value::String(target)) => target,
            _ => event.metadata().target().to_owned(),
        };
        // `log.*` came from the `log` bridge; `otel.*` names spans for the
        // trace collector.
        map.retain(|k, _| !k.starts_with("log.") && !k.starts_with("otel."));
        map.insert("timestamp".to_owned(), Value::from(timestamp()));
        map.insert(
            "level".to_owned(),
            Value::from(event.metadata().level().as_str()),
        );
        map.insert("target".to_owned(), Value::from(target));
        let line = Value::Object(map).to_string();
        writeln!(writer, "{line}")
    }
}

/// Records fields as JSON values: numbers and booleans as themselves,
/// everything else as its text (`%value` fields print their `Display`).
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_filter_is_refused_and_an_empty_one_is_the_default() {
        assert!(filter_from(None).is_ok());
        assert!(filter_from(Some("  ")).is_ok());
        assert!(filter_from(Some("warn,switchboard=debug")).is_ok());
        let err = filter_from(Some("switchboard=loud")).unwrap_err();
        assert!(err.to_string().starts_with("RUST_LOG "), "{err}");
    }

    #[test]
    fn events_are_flat_json_with_their_spans_fields() {
        let (tx, rx) = mpsc::sync_channel::<Out>(16);
        let subscriber = tracing_subscriber::registry().with(SpanFieldsLayer).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(NonBlocking { queue: tx }),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", request_id = "r-1", route = "/a");
            let _entered = span.enter();
            let deployment: Option<&str> = None;
            tracing::info!(status = 200u16, duration_ms = 1.5, deployment, ok = true, name = %"x", "done");
        });
        let Ok(Out::Line(line)) = rx.try_recv() else {
            panic!("no line");
        };
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["request_id"], "r-1");
        assert_eq!(value["route"], "/a");
        assert_eq!(value["status"], 200);
        assert_eq!(value["duration_ms"], 1.5);
        assert_eq!(value["ok"], true);
        assert_eq!(value["name"], "x");
        assert_eq!(value["message"], "done");
        assert_eq!(value["level"], "INFO");
        assert!(value.get("deployment").is_none());
        assert!(line.ends_with(b"}\n"));
    }

    #[test]
    fn a_full_queue_drops_lines_instead_of_waiting() {
        let (tx, _rx) = mpsc::sync_channel::<Out>(1);
        let writer = NonBlocking { queue: tx };
        let before = DROPPED.get();
        for _ in 0..3 {
            let mut line = writer.make_writer();
            line.write_all(b"x\n").unwrap();
        }
        assert!(DROPPED.get() >= before + 2);
    }
}
