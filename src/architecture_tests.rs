//! The map cannot drift: ARCHITECTURE.md's layer table and its list of
//! absences are read here and checked against the `crate::` paths (in `use`
//! lines and inline) of every production source file. A module may use only
//! the modules on lower lines of the table, so an import cycle between
//! top-level modules, or an upward import on the data path, fails this test
//! with the file and line at fault. A new top-level module fails it too until
//! it is placed on the map.
//!
//! Test code (`tests.rs`, `*_tests.rs`, `tests_*.rs`, `test_support.rs`,
//! items under `#[cfg(test)]`) is exempt: a test may reach anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The table: top line first; names on one line are peers that must not
/// use each other.
fn layers(architecture: &str) -> Vec<Vec<String>> {
    fenced(architecture, "layers")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `module: crate crate …` lines: external crates a module must not use.
fn absences(architecture: &str) -> Vec<(String, Vec<String>)> {
    fenced(architecture, "absent")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, cs)| {
            let crates = cs.split_whitespace().map(str::to_string).collect();
            (m.trim().to_string(), crates)
        })
        .collect()
}

fn fenced(text: &str, info: &str) -> String {
    let open = format!("```{info}\n");
    let Some(start) = text.find(&open) else {
        panic!("ARCHITECTURE.md has no ```{info} block");
    };
    let body = &text[start + open.len()..];
    body[..body.find("```").expect("unclosed block")].to_string()
}

/// Comments and string/char literals blanked (line breaks kept), so a path
/// in a doc comment or an error message is not taken for an import.
fn blank(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let keep_lines = |s: &str| {
        s.chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect::<String>()
    };
    while i < b.len() {
        let rest = &src[i..];
        let end = if rest.starts_with("//") {
            rest.find('\n').unwrap_or(rest.len())
        } else if rest.starts_with("/*") {
            rest.find("*/").map_or(rest.len(), |e| e + 2)
        } else if let Some(n) = raw_string_len(rest, i == 0 || !is_ident(b[i - 1])) {
            n
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if let Some(n) = char_literal_len(rest) {
            n
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        out.push_str(&keep_lines(&rest[..end]));
        i += end;
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn raw_string_len(rest: &str, at_word_start: bool) -> Option<usize> {
    let r = rest.strip_prefix('r').or_else(|| rest.strip_prefix("br"))?;
    if !at_word_start {
        return None;
    }
    let hashes = r.len() - r.trim_start_matches('#').len();
    let body = r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let prefix = rest.len() - body.len();
    Some(prefix + body.find(&close).map_or(body.len(), |e| e + close.len()))
}

/// `'x'`, `'\n'`, `'\u{..}'` — not a lifetime (`'a`).
fn char_literal_len(rest: &str) -> Option<usize> {
    let r = rest.strip_prefix('\'')?;
    let mut chars = r.char_indices();
    let (_, c) = chars.next()?;
    let after = if c == '\\' {
        r[1..].find('\'').map(|e| e + 1)?
    } else {
        c.len_utf8()
    };
    (r[after..].starts_with('\'')).then_some(after + 2)
}

/// Removes every item under `#[cfg(test)]` (to the end of its braces or
/// its `;`), keeping line breaks so line numbers stay true.
fn without_test_items(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(k) = out[from..].find("#[cfg(test)]").map(|k| k + from) {
        let rest = &out[k..];
        let semi = rest.find(';');
        let brace = rest.find('{');
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => {
                let mut depth = 0;
                let mut e = rest.len();
                for (j, c) in rest[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                e = b + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                e
            }
            (Some(s), None) => s + 1,
            (None, None) => rest.len(),
        };
        let blanked: String = rest[..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(k..k + end, &blanked);
        from = k + end;
    }
    out
}

fn is_test_file(path: &Path) -> bool {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem == "tests"
        || stem.ends_with("_tests")
        || stem.starts_with("tests_")
        || stem == "test_support"
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None`: lib.rs, main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every inline `crate::NAME` a production file refers to, with its line
/// (`use crate::{…}` groups are read by [`group_refs`]).
fn crate_refs(code: &str) -> Vec<(String, usize)> {
    let mut refs = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(k) = rest.find("crate::") {
            let before_ok = k == 0 || !is_ident(rest.as_bytes()[k - 1]);
            rest = &rest[k + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if before_ok && !name.is_empty() {
                refs.push((name, n + 1));
            }
        }
    }
    refs
}

/// Checks the tree at `src` against the table and absences.
fn check(src: &Path, table: &[Vec<String>], absent: &[(String, Vec<String>)]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = table
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (m.as_str(), table.len() - i)))
        .collect();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut modules = std::collections::BTreeSet::new();
    for f in &files {
        let Some(m) = module_of(src, f) else { continue };
        modules.insert(m.clone());
        if is_test_file(f) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let code = without_test_items(&blank(&text));
        let rel = f.strip_prefix(src).unwrap().display().to_string();
        let Some(&mine) = rank.get(m.as_str()) else {
            continue;
        };
        for (used, line) in group_refs(&code) {
            if used == m {
                continue;
            }
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs < mine => {}
                Some(_) => problems.push(format!(
                    "src/{rel}:{line}: `{m}` uses `crate::{used}`, which is not below it in ARCHITECTURE.md's layer table"
                )),
                None => {}
            }
        }
        for (module, crates) in absent {
            if *module != m {
                continue;
            }
            for c in crates {
                let pat = format!("{c}::");
                for (n, l) in code.lines().enumerate() {
                    let hit = l.match_indices(&pat).any(|(k, _)| {
                        k == 0 || !is_ident(l.as_bytes()[k - 1]) && l.as_bytes()[k - 1] != b':'
                    });
                    if hit {
                        problems.push(format!(
                            "src/{rel}:{}: `{m}` uses the `{c}` crate, which ARCHITECTURE.md says it must not",
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    for m in &modules {
        if !rank.contains_key(m.as_str()) && m != "test_support" && m != "architecture_tests" {
            problems.push(format!(
                "module `{m}` is not in ARCHITECTURE.md's layer table: place it on the map"
            ));
        }
    }
    for m in rank.keys() {
        if !modules.contains(*m) {
            problems.push(format!(
                "ARCHITECTURE.md's layer table names `{m}`, which is not a module of src/"
            ));
        }
    }
    problems
}

/// Every module a production file refers to: inline paths, and the first
/// segment of each item of a `use crate::{a, b::{c, d}}` group.
fn group_refs(code: &str) -> Vec<(String, usize)> {
    let mut refs = crate_refs(code);
    let mut at = 0;
    while let Some(k) = code[at..].find("crate::{").map(|k| k + at) {
        let line = code[..k].matches('\n').count() + 1;
        let start = k + "crate::{".len();
        let mut depth = 1;
        let mut end = code.len();
        for (j, c) in code[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let body = &code[start..end];
        let mut d = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in body.chars() {
            match c {
                '{' => d += 1,
                '}' => d -= 1,
                ',' if d == 0 => items.push(std::mem::take(&mut item)),
                _ if d == 0 => item.push(c),
                _ => {}
            }
        }
        items.push(item);
        for it in items {
            let first: String = it
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !first.is_empty() && first != "self" {
                refs.push((first, line));
            }
        }
        at = end;
    }
    refs
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_module_uses_only_modules_below_it_on_the_map() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let src =
        std::env::var_os("GAVEL_ARCH_CHECK_SRC").map_or_else(|| root().join("src"), PathBuf::from);
    let problems = check(&src, &layers(&arch), &absences(&arch));
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself: a cycle, an upward use hidden in a `use` group, an
/// unplaced module and a forbidden crate are all found; comments, strings
/// and test items are not taken for uses.
#[test]
fn the_checker_finds_cycles_groups_unplaced_modules_and_forbidden_crates() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    std::fs::create_dir_all(s.join("low")).unwrap();
    std::fs::write(
        s.join("lib.rs"),
        "pub mod high; pub mod low; pub mod stray;",
    )
    .unwrap();
    std::fs::write(
        s.join("high.rs"),
        "use crate::low::X;\n// crate::stray in a comment\nfn f() { let _ = \"crate::stray\"; }\n",
    )
    .unwrap();
    std::fs::write(
        s.join("low/mod.rs"),
        "use crate::{text, high::Y};\nfn g() { rmcp::x(); }\n#[cfg(test)]\nmod t { use crate::stray; }\n",
    )
    .unwrap();
    std::fs::write(s.join("low/tests.rs"), "use crate::high;\n").unwrap();
    std::fs::write(s.join("stray.rs"), "").unwrap();
    let table = vec![vec!["high".to_string()], vec!["low".to_string()]];
    let absent = vec![("low".to_string(), vec!["rmcp".to_string()])];
    let p = check(s, &table, &absent);
    assert!(
        p.iter()
            .any(|l| l.contains("src/low/mod.rs:1: `low` uses `crate::high`")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("src/low/mod.rs:2: `low` uses the `rmcp` crate")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|l| l.contains("module `stray` is not in")),
        "{p:#?}"
    );
    assert_eq!(
        p.len(),
        3,
        "comments, strings, test items and peers' text are not uses: {p:#?}"
    );
}
