//! Streaming a decision log: one record at a time, so a log of any size is
//! read in constant memory. A line that is not a JSON object is an error
//! naming `file:line` — a report or explanation silently built on part of a
//! log would mislead.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use super::GovernanceError;

/// Calls `f(line_number, record)` for every non-empty line of `path`.
/// `f` returns `false` to stop early.
///
/// A last line that does not parse *and* has no newline is a record torn by
/// a crash or a full disk while it was written (gavel writes each record as
/// one line ending in `\n`): it is skipped, not an error, and its line
/// number returned so the caller can say so. Anywhere else a bad line is an
/// error naming `file:line`.
pub fn for_each_record(
    path: &Path,
    mut f: impl FnMut(usize, Value) -> Result<bool, GovernanceError>,
) -> Result<Option<usize>, GovernanceError> {
    let file = std::fs::File::open(path).map_err(|source| GovernanceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    for i in 0.. {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| GovernanceError::Io {
                path: path.display().to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        let complete = line.ends_with(b"\n");
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |message: String| GovernanceError::Log {
            file: path.display().to_string(),
            line: i + 1,
            message,
        };
        let v: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(_) if !complete => return Ok(Some(i + 1)),
            Err(e) => {
                return Err(bad(format!(
                    "not a JSON decision record ({e}); a gavel decision log has one JSON object per line"
                )));
            }
        };
        if !v.is_object() {
            return Err(bad("a decision record must be a JSON object".into()));
        }
        if !f(i + 1, v)? {
            break;
        }
    }
    Ok(None)
}

/// The record with `decision_id == id`, and its line.
pub fn find_decision(path: &Path, id: &str) -> Result<(usize, Value), GovernanceError> {
    let mut found = None;
    let _torn_tail = for_each_record(path, |line, v| {
        if v.get("decision_id").and_then(Value::as_str) == Some(id) {
            found = Some((line, v));
            return Ok(false);
        }
        Ok(true)
    })?;
    found.ok_or_else(|| GovernanceError::UnknownDecision {
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
            Ok(true)
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
        let e = for_each_record(&p, |_, _| Ok(true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl:2:"), "{e}");
        // A last record without a newline that parses is a record.
        std::fs::write(&p, "{\"decision_id\":\"a\"}").unwrap();
        let mut n = 0;
        assert_eq!(
            for_each_record(&p, |_, _| {
                n += 1;
                Ok(true)
            })
            .unwrap(),
            None
        );
        assert_eq!(n, 1);
    }
}
