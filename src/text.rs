//! Text that came from outside gavel (an agent's tool name, URI, prompt name
//! or arguments; an upstream's tool list, error message or stderr; a
//! policy's reason) made safe to put on one line that a person reads: gavel's
//! own log and the approval question the user is asked.
//!
//! Why: such text is attacker-controlled. A newline in a resource URI would
//! otherwise start a forged line in gavel's log (`… INFO gavel: policy
//! activated`) or a forged paragraph in the approval question ("Rule: none —
//! safe to approve"), and a bidi override would make the user read text in
//! another order than it is. Every character that can end, restart or
//! reorder a line is shown as an escape instead: C0 and C1 controls and DEL
//! (`\n`, `\r`, `\t`, else `\u{…}`), the Unicode line and paragraph
//! separators, and the bidi embedding/override/isolate/mark characters.
//! Backslashes are left alone: the text stays readable (Windows paths), and
//! a literal `\n` typed by an agent forges nothing — it is still on the
//! same line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a log line or a prompt as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' // LINE SEPARATOR
                | '\u{2029}' // PARAGRAPH SEPARATOR
                | '\u{061C}' // ARABIC LETTER MARK
                | '\u{200E}' // LEFT-TO-RIGHT MARK
                | '\u{200F}' // RIGHT-TO-LEFT MARK
                | '\u{202A}'..='\u{202E}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// The first `max` bytes of `s`, cut on a character boundary (never
/// panics, whatever the text): outside text bounded before it reaches a
/// log line, an error or a policy input.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` with every [`is_unsafe`] character escaped; borrowed when there is
/// none (the common case costs one scan).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// gavel's own log (`tracing`): every field value — the message included —
/// goes through [`escape_controls`], so no field of any event can put a line
/// break or a bidi control into the log, whoever wrote the text. Installed
/// by `cli::logging` as the formatter's field formatter; the output is
/// otherwise the default one (`message name=value …`, names in italics on a
/// terminal).
#[derive(Debug, Default, Clone, Copy)]
pub struct SafeFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for SafeFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = SafeVisitor {
            ansi: writer.has_ansi_escapes(),
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct SafeVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    ansi: bool,
    first: bool,
    result: std::fmt::Result,
}

impl SafeVisitor<'_> {
    fn put(&mut self, field: &tracing::field::Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let text = escape_controls(text);
        let name = field.name();
        self.result = if name == "message" {
            write!(self.writer, "{sep}{text}")
        } else {
            // `r#type` as a field name is written `type`, as the default does.
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.ansi {
                write!(self.writer, "{sep}\x1b[3m{name}\x1b[0m={text}")
            } else {
                write!(self.writer, "{sep}{name}={text}")
            }
        };
    }
}

impl tracing::field::Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.put(field, value);
        } else {
            self.put(field, &format!("{value:?}"));
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.put(field, &crate::error_text::chain(value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Events from the `log` crate carry their metadata as `log.*` fields.
        if field.name().starts_with("log.") {
            return;
        }
        self.put(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_controls_and_bidi_are_escaped_and_the_rest_kept() {
        assert!(matches!(
            escape_controls("fixture://a/b?q=1 é 日本 \\n"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\nb\r\tc\u{0}d\u{1b}[31m\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\u{0000}d\\u{001b}[31m\\u{007f}\\u{0085}"
        );
        assert_eq!(
            escape_controls("x\u{2028}y\u{2029}z"),
            "x\\u{2028}y\\u{2029}z"
        );
        let bidi = "\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{061C}";
        let out = escape_controls(bidi);
        assert!(!out.chars().any(is_unsafe), "{out}");
        assert_eq!(out.matches("\\u{").count(), bidi.chars().count());
    }

    /// The formatter gavel's log is built with: a message, a `%` field and a
    /// `?` field with line breaks each stay on the event's one line.
    #[test]
    fn every_field_of_a_log_event_stays_on_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(SafeFields)
            .with_writer(move || out.clone())
            .finish();
        let uri = "file:///x\n2026-12-06T00:00:00Z  INFO gavel: forged";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(tool = %uri, reasons = ?vec![uri], "denied {uri}\u{2028}");
            let e = std::io::Error::other("upstream said\r\nforged");
            tracing::warn!(
                error = &e as &(dyn std::error::Error + 'static),
                r#type = "x",
                "plain"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("denied file:///x\\n2026")
                && lines[0].contains("\\u{2028}")
                && lines[0].contains("tool=file:///x\\n2026"),
            "{text}"
        );
        assert!(
            lines[1].contains("error=upstream said\\r\\nforged") && lines[1].contains("type=\"x\""),
            "{text}"
        );
        assert!(!text.contains('\u{2028}') && !text.contains('\r'), "{text}");
    }
}
