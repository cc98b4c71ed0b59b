//! Parsing context shared by the section validators: turns a byte offset into
//! file:line:col errors naming the field, expands `${ENV}`, reads durations,
//! sizes and paths relative to the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;
use super::expand;
use super::raw::RawSize;

pub(super) const SERVER_NAME_MAX: usize = 32;

/// Parsing context: the text (for line numbers), the origin, the environment.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) path: String,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) base: PathBuf,
}

impl<'a> Ctx<'a> {
    /// The context for `text` read from `origin`: relative paths resolve
    /// against the directory of `origin` (made absolute first).
    pub(super) fn new(
        text: &'a str,
        origin: &Path,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let base = std::path::absolute(origin)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Ctx {
            text,
            path: origin.display().to_string(),
            env,
            base,
        }
    }

    pub(super) fn at(&self, offset: usize, field: &str, message: impl Into<String>) -> ConfigError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            col,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn general(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::General {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub(super) fn expand(&self, v: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        expand::expand(v.get_ref(), self.env).map_err(|var| {
            if var.contains(' ') || var.contains('"') {
                self.at(v.span().start, field, var)
            } else {
                self.at(
                    v.span().start,
                    field,
                    format!("environment variable {var} is not set (set it, or write ${{{var}:-default}})"),
                )
            }
        })
    }

    pub(super) fn duration(
        &self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|_| {
            self.at(
                v.span().start,
                field,
                format!("invalid duration {:?} (use a number with a unit, e.g. \"30s\", \"2m\", \"500ms\")", v.get_ref()),
            )
        })?;
        if d.is_zero() {
            return Err(self.at(v.span().start, field, "must be greater than zero"));
        }
        Ok(d)
    }

    pub(super) fn size(
        &self,
        v: &Option<Spanned<RawSize>>,
        field: &str,
        default: usize,
        min: u64,
        max: u64,
    ) -> Result<usize, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = match v.get_ref() {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(t) => parse_size(t),
        }
        .ok_or_else(|| {
            self.at(
                v.span().start,
                field,
                "invalid size (use bytes, or a number with a unit: \"512KiB\", \"16MiB\", \"1MB\")",
            )
        })?;
        if n < min || n > max {
            return Err(self.at(
                v.span().start,
                field,
                format!("must be between {min} and {max} bytes, got {n}"),
            ));
        }
        Ok(n as usize)
    }

    pub(super) fn path(&self, p: String) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_relative() {
            self.base.join(p)
        } else {
            p
        }
    }
}

/// "16MiB", "512 KiB", "1MB", "4096".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SERVER_NAME_MAX
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.contains("__")
}

/// Bundle references: `oci://…` checked and normalized (so the cache key and
/// the logs use one spelling); paths resolve against the config's directory.
pub(super) fn bundle_ref(
    ctx: &Ctx,
    b: String,
    at: usize,
    field: &str,
) -> Result<String, ConfigError> {
    if b.starts_with("oci://") {
        crate::bundle::oci::OciRef::parse(&b)
            .map(|r| r.to_string())
            .map_err(|e| ctx.at(at, field, e.to_string()))
    } else {
        Ok(ctx.path(b).display().to_string())
    }
}
