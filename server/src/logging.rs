//! Log output of the server process (issue 12 §4): text for people or JSON for a log
//! collector (`log_format`), filtered by `log`, without ANSI colour codes unless stdout is a
//! terminal (a systemd journal or a log file must not fill with escape sequences).
//!
//! Every line logged while serving a request carries its `request_id` (the `request` span of
//! `monitoring::request_layer`). No line carries personal data: log calls name ids (user,
//! device, visit, household, upload) and error kinds, never a name, an ID number, a phone
//! number, a password or a token; docs/operations.md "Logs" lists what to check when adding
//! one.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::{LogFormat, Settings};

/// Install the process's log subscriber on stdout. Call once, first thing in `main`.
pub fn init(settings: &Settings) {
    let ansi = std::io::stdout().is_terminal();
    let subscriber = subscriber(settings, std::io::stdout, ansi);
    if let Err(error) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("cannot install the log subscriber: {error}");
    }
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture it).
pub fn subscriber<W>(
    settings: &Settings,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    // A mistyped filter must not silence the server: fall back to `info` (and say so).
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|error| {
        eprintln!(
            "log filter {:?} is invalid ({error}); using info",
            settings.log
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match settings.log_format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Every enclosing span, so `request_id` is on the line however deep the call is.
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_ansi(false)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(format: LogFormat, ansi: bool) -> String {
        let captured = Captured::default();
        let settings = Settings {
            log_format: format,
            ..Settings::default()
        };
        let writer = captured.clone();
        let subscriber = subscriber(&settings, move || writer.clone(), ansi);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _entered = span.enter();
            let inner = tracing::info_span!("inner");
            let _inner = inner.enter();
            tracing::info!(visit_id = "v-1", "visit stored");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_request_id_of_their_request() {
        let output = lines_of(LogFormat::Json, false);
        let line: serde_json::Value = serde_json::from_str(output.trim()).expect("one JSON line");
        assert_eq!(line["fields"]["message"], "visit stored");
        assert_eq!(line["spans"][0]["request_id"], "r-1");
        assert!(!output.contains('\u{1b}'), "no ANSI codes: {output:?}");
    }

    #[test]
    fn text_lines_have_no_colour_codes_off_a_terminal() {
        let output = lines_of(LogFormat::Text, false);
        assert!(output.contains("request_id=\"r-1\"") || output.contains("request_id=r-1"));
        assert!(!output.contains('\u{1b}'), "{output:?}");
        assert!(lines_of(LogFormat::Text, true).contains('\u{1b}'));
    }
}
