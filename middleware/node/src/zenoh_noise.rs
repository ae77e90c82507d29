//! One zenoh log line made readable. zenoh 1.10 logs "Received Data for unknown expr_id: N" at
//! ERROR (`api/session.rs`) when data arrives addressed by a wire-expression id its session no
//! longer has: data in flight to a subscription the session has just undeclared, when the node
//! closes its session at a stop or redeclares its subscriptions after a member became
//! unreachable. Nothing Spook needs is lost (the data was for a subscription being torn down,
//! and digests recover anything missed), but a stream of ERROR lines reads like a failure. The
//! log filter lets the first one through and counts the rest; the node then says once what
//! they mean ([`explanation_due`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_subscriber::layer::{Context, Filter};

static UNKNOWN_EXPR: AtomicU64 = AtomicU64::new(0);
static EXPLAINED: AtomicBool = AtomicBool::new(false);

const MESSAGE: &str = "Received Data for unknown expr_id";

/// How many such lines zenoh has logged in this process.
#[must_use]
pub fn unknown_expr_count() -> u64 {
    UNKNOWN_EXPR.load(Ordering::Relaxed)
}

/// How many such lines there were so far, the first time this is asked after one: the
/// caller then says what they mean, once in this process.
#[must_use]
pub fn explanation_due() -> Option<u64> {
    let n = unknown_expr_count();
    (n > 0 && !EXPLAINED.swap(true, Ordering::Relaxed)).then_some(n)
}

/// The log filter: every event passes except the second and later "unknown expr_id" lines.
pub struct UnknownExprOnce;

struct StartsWith(bool);

impl Visit for StartsWith {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.starts_with(MESSAGE);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}").starts_with(MESSAGE);
        }
    }
}

impl<S> Filter<S> for UnknownExprOnce {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        if event.metadata().target() != "zenoh::api::session" {
            return true;
        }
        let mut m = StartsWith(false);
        event.record(&mut m);
        !m.0 || UNKNOWN_EXPR.fetch_add(1, Ordering::Relaxed) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    #[test]
    fn the_first_unknown_expr_line_passes_and_the_rest_are_counted() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let writer = move || Sink(sink.clone());
        let sub = tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false).with_filter(UnknownExprOnce));
        let before = unknown_expr_count();
        tracing::subscriber::with_default(sub, || {
            for n in 0..3 {
                tracing::error!(target: "zenoh::api::session", "Received Data for unknown expr_id: {n}");
            }
            tracing::error!(target: "zenoh::api::session", "something else");
        });
        let text = String::from_utf8(lines.lock().map(|l| l.clone()).unwrap_or_default()).unwrap_or_default();
        assert_eq!(text.matches("unknown expr_id").count(), 1, "{text}");
        assert!(text.contains("something else"), "{text}");
        assert_eq!(unknown_expr_count() - before, 3);
        assert!(explanation_due().is_some_and(|n| n >= 3), "explained once, after the first");
        assert_eq!(explanation_due(), None, "and only once");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut l) = self.0.lock() {
                l.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
