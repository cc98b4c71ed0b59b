//! A tiny document model so `explain` writes its content once and renders it
//! as plain text (terminals) or Markdown (wikis, pull requests).

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
}

#[derive(Debug)]
enum Block {
    Heading(usize, String),
    Para(String),
    Bullet(usize, String),
}

/// Content in order; `code` spans are marked with backticks in both formats.
#[derive(Debug, Default)]
pub struct Doc {
    blocks: Vec<Block>,
}

/// A block's text as it may reach a terminal: what it quotes from bundles and
/// logs (tool names, URIs, reasons) is outside text, so control characters
/// are escaped — a name holding a newline or an escape sequence cannot forge
/// a line or repaint the screen. Blocks are single lines by construction.
fn safe(text: impl Into<String>) -> String {
    let text = text.into();
    crate::text::escape_controls(&text).into_owned()
}

impl Doc {
    pub fn heading(&mut self, level: usize, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, safe(text)));
    }

    pub fn para(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(safe(text)));
    }

    /// A list item at nesting `depth` (0 = top).
    pub fn bullet(&mut self, depth: usize, text: impl Into<String>) {
        self.blocks.push(Block::Bullet(depth, safe(text)));
    }

    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        let mut prev_bullet = false;
        for b in &self.blocks {
            match b {
                Block::Heading(level, t) => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    match format {
                        Format::Markdown => {
                            let _ = writeln!(out, "{} {t}", "#".repeat((*level).clamp(1, 6)));
                        }
                        Format::Text => {
                            let t = t.replace('`', "");
                            let _ = writeln!(out, "{t}");
                            let ch = if *level <= 1 { '=' } else { '-' };
                            if *level <= 2 {
                                let _ =
                                    writeln!(out, "{}", ch.to_string().repeat(t.chars().count()));
                            }
                        }
                    }
                    prev_bullet = false;
                }
                Block::Para(t) => {
                    if prev_bullet || !out.is_empty() {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "{t}");
                    prev_bullet = false;
                }
                Block::Bullet(depth, t) => {
                    if !prev_bullet && format == Format::Markdown {
                        out.push('\n');
                    }
                    let indent = "  ".repeat(*depth);
                    let _ = writeln!(out, "{indent}- {t}");
                    prev_bullet = true;
                }
            }
        }
        if format == Format::Text {
            out = out.replace('`', "");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let mut d = Doc::default();
        d.heading(1, "Server fs");
        d.para("Reads `a`.");
        d.bullet(0, "one");
        d.bullet(1, "two");
        let md = d.render(Format::Markdown);
        assert!(md.starts_with("# Server fs\n"), "{md}");
        assert!(
            md.contains("Reads `a`.") && md.contains("\n- one\n  - two\n"),
            "{md}"
        );
        let text = d.render(Format::Text);
        assert!(text.starts_with("Server fs\n=========\n"), "{text}");
        assert!(text.contains("Reads a.") && !text.contains('`'), "{text}");
    }

    /// Outside text (a tool name with a line break, an escape sequence)
    /// cannot forge a line or reach the terminal raw.
    #[test]
    fn quoted_text_cannot_forge_a_line() {
        let mut d = Doc::default();
        d.bullet(0, "tool `evil\nDECISION: allowed` \u{1b}[2J");
        for format in [Format::Text, Format::Markdown] {
            let out = d.render(format);
            assert_eq!(out.trim().lines().count(), 1, "{out:?}");
            assert!(!out.contains('\u{1b}'), "{out:?}");
        }
    }
}
