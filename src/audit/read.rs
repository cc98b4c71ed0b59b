//! Reading a decision log: the one reader behind `gavel replay`, `gavel
//! report` and `gavel explain --decision`.
//!
//! It streams: one line at a time, each read up to a bound
//! ([`MAX_LINE_BYTES`]); the rest of a longer line is skipped without being
//! held, so a log of any size — or one damaged into a single endless line —
//! is read in bounded memory. Every line is classified the same way for every
//! reader ([`Entry`]); what a bad line means is the caller's choice:
//!
//! - replay counts it (`malformed`, line numbers kept) and goes on: one
//!   damaged record must not hide what a policy change does to the others;
//! - report and explain ([`for_each_record`]) stop with an error naming
//!   `file:line` — a report silently built on part of a log would mislead —
//!   except for a torn tail: a last line without its newline that does not
//!   parse is a record cut short by a crash or a full disk while it was
//!   written (gavel writes each record as one line ending in `\n`), skipped
//!   and its line number returned so the caller can say so.
//!
//! Blank lines (whitespace only) are not records: the writer leaves one where
//! a record the disk had no room for was blanked (`audit::log`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

/// Longest line read as a record; a longer one is [`Bad::TooLong`].
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// What one line of a decision log holds.
#[derive(Debug)]
pub enum Entry {
    /// A JSON object: a decision record or an approval step.
    Record(Value),
    /// Nothing but whitespace.
    Blank,
    /// Not a record.
    Bad(Bad),
}

/// Why a line is not a record.
#[derive(Debug)]
pub enum Bad {
    /// Longer than the reader's bound (its bytes were skipped, not kept).
    TooLong,
    NotUtf8,
    NotJson(serde_json::Error),
    NotObject,
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ONE_PER_LINE: &str = "a gavel decision log has one JSON object per line";
        match self {
            Bad::TooLong => write!(
                f,
                "a line longer than {} MiB is not a gavel decision record",
                MAX_LINE_BYTES >> 20
            ),
            Bad::NotUtf8 => write!(f, "not a JSON decision record (not UTF-8); {ONE_PER_LINE}"),
            Bad::NotJson(e) => write!(f, "not a JSON decision record ({e}); {ONE_PER_LINE}"),
            Bad::NotObject => write!(f, "a decision record must be a JSON object"),
        }
    }
}

/// Classifies the text of one line (without or with its line ending).
pub fn classify(line: &[u8]) -> Entry {
    let Ok(text) = std::str::from_utf8(line) else {
        return Entry::Bad(Bad::NotUtf8);
    };
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Entry::Blank;
    }
    match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => Entry::Record(v),
        Ok(_) => Entry::Bad(Bad::NotObject),
        Err(e) => Entry::Bad(Bad::NotJson(e)),
    }
}

/// One line of the log.
#[derive(Debug)]
pub struct Line {
    /// 1-based.
    pub number: u64,
    /// Ended by a newline (false only for the last line of the file).
    pub complete: bool,
    pub entry: Entry,
}

/// A decision log read line by line, each line bounded.
pub struct LogReader<R> {
    reader: R,
    max_line_bytes: usize,
    line_no: u64,
    buf: Vec<u8>,
}

impl LogReader<BufReader<File>> {
    /// The log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(BufReader::with_capacity(
            1 << 16,
            File::open(path)?,
        )))
    }
}

impl<R: BufRead> LogReader<R> {
    pub fn new(reader: R) -> Self {
        LogReader {
            reader,
            max_line_bytes: MAX_LINE_BYTES,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// A smaller line bound (tests).
    pub fn with_max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// The next line, `None` at the end of the log.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let limit = self.max_line_bytes as u64 + 1;
        let n = Read::by_ref(&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let (complete, entry) =
            if self.buf.len() > self.max_line_bytes && !self.buf.ends_with(b"\n") {
                (self.skip_rest_of_line()?, Entry::Bad(Bad::TooLong))
            } else {
                (self.buf.ends_with(b"\n"), classify(&self.buf))
            };
        Ok(Some(Line {
            number: self.line_no,
            complete,
            entry,
        }))
    }

    /// Consumes the rest of an over-long line without keeping it; whether
    /// its newline was found.
    fn skip_rest_of_line(&mut self) -> std::io::Result<bool> {
        loop {
            let (found, at_end, used) = {
                let chunk = self.reader.fill_buf()?;
                match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (true, false, i + 1),
                    None => (false, chunk.is_empty(), chunk.len()),
                }
            };
            self.reader.consume(used);
            if found || at_end {
                return Ok(found);
            }
        }
    }
}

/// Why a log could not be read as a whole (report, explain).
#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Bad {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "decision {id:?} is not in {file}; copy the decision_id from a record of that log (the agent sees it as authorizationContextId)"
    )]
    UnknownDecision { id: String, file: String },
}

/// Calls `f(line_number, record)` for every record of `path`; `f` returns
/// `false` to stop early. A bad line is an error naming `file:line`, except
/// a torn tail (see the module doc): skipped, its line number returned.
pub fn for_each_record<E: From<LogReadError>>(
    path: &Path,
    mut f: impl FnMut(usize, Value) -> Result<bool, E>,
) -> Result<Option<usize>, E> {
    let io = |source| LogReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut log = LogReader::open(path).map_err(io)?;
    while let Some(line) = log.next_line().map_err(io)? {
        let number = line.number as usize;
        match line.entry {
            Entry::Blank => {}
            Entry::Record(v) => {
                if !f(number, v)? {
                    break;
                }
            }
            Entry::Bad(_) if !line.complete => return Ok(Some(number)),
            Entry::Bad(why) => {
                return Err(LogReadError::Bad {
                    file: path.display().to_string(),
                    line: number,
                    message: why.to_string(),
                }
                .into());
            }
        }
    }
    Ok(None)
}

/// The record with `decision_id == id`, and its line.
pub fn find_decision(path: &Path, id: &str) -> Result<(usize, Value), LogReadError> {
    let mut found = None;
    let _torn_tail = for_each_record(path, |line, v| {
        if v.get("decision_id").and_then(Value::as_str) == Some(id) {
            found = Some((line, v));
            return Ok::<_, LogReadError>(false);
        }
        Ok(true)
    })?;
    found.ok_or_else(|| LogReadError::UnknownDecision {
        id: id.to_string(),
        file: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_records_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"decision_id\":\"a\"}\n\n{\"decision_id\":\"b\",\"x\":1}\n",
        )
        .unwrap();
        let (line, v) = find_decision(&p, "b").unwrap();
        assert_eq!((line, v["x"].as_i64()), (3, Some(1)));
        let e = find_decision(&p, "zzz").unwrap_err().to_string();
        assert!(
            e.contains("\"zzz\" is not in") && e.contains("d.jsonl"),
            "{e}"
        );
        std::fs::write(&p, "{\"decision_id\":\"a\"}\nnot json\n").unwrap();
        let e = find_decision(&p, "b").unwrap_err().to_string();
        assert!(e.contains("d.jsonl:2: not a JSON decision record"), "{e}");
        std::fs::write(&p, "[1]\n").unwrap();
        let e = find_decision(&p, "b").unwrap_err().to_string();
        assert!(
            e.contains(":1: a decision record must be a JSON object"),
            "{e}"
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_reported_elsewhere_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"decision_id\":\"a\"}\n{\"decision_id\":\"b\",\"inp").unwrap();
        let mut seen = Vec::new();
        let torn = for_each_record(&p, |line, v| {
            seen.push((line, v["decision_id"].clone()));
            Ok::<_, LogReadError>(true)
        })
        .unwrap();
        assert_eq!(torn, Some(2));
        assert_eq!(seen, vec![(1, serde_json::json!("a"))]);
        // The same text with its newline is a damaged record, not a torn one.
        std::fs::write(
            &p,
            "{\"decision_id\":\"a\"}\n{\"decision_id\":\"b\",\"inp\n",
        )
        .unwrap();
        let e = for_each_record(&p, |_, _| Ok::<_, LogReadError>(true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl:2:"), "{e}");
        // A last record without a newline that parses is a record.
        std::fs::write(&p, "{\"decision_id\":\"a\"}").unwrap();
        let mut n = 0;
        assert_eq!(
            for_each_record(&p, |_, _| {
                n += 1;
                Ok::<_, LogReadError>(true)
            })
            .unwrap(),
            None
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn an_over_long_line_is_skipped_whole_and_the_next_read() {
        let text = format!("{}\n{{\"a\":1}}\n{}", "x".repeat(50), "y".repeat(50));
        let mut r =
            LogReader::new(BufReader::with_capacity(8, text.as_bytes())).with_max_line_bytes(10);
        let first = r.next_line().unwrap().unwrap();
        assert!(matches!(first.entry, Entry::Bad(Bad::TooLong)) && first.complete);
        let second = r.next_line().unwrap().unwrap();
        assert!(matches!(second.entry, Entry::Record(_)) && second.number == 2);
        let last = r.next_line().unwrap().unwrap();
        assert!(matches!(last.entry, Entry::Bad(Bad::TooLong)) && !last.complete);
        assert!(r.next_line().unwrap().is_none());
    }
}
