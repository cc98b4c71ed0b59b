//! `gavel test`: a bundle's `test_*` rules as `opa test` runs them
//! (`bundle::testrun`), or, with `--config` and `--server`, fixture files
//! through one server's whole layered decision (`cli::fixtures`).
//!
//! Exit status as `opa test`'s (`cmd/test.go` `runTests`): 0 when every
//! test passed, 2 when one failed, errored or was skipped (skipped: unless
//! `--exit-zero-on-skipped`) or the coverage is under `--threshold`, 1 when
//! the bundles could not be loaded.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bundle::testrun::{self, TestOptions, TestReport, report};

use super::ExitStatus;

// `gavel test`'s arguments (the command's help is the `Test` variant's doc).
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Bundle directories or .tar.gz files; with --config, fixture files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Run only the tests (or fixture cases) whose full name matches this
    /// regular expression (`data.pkg.test_x`; a case: `FILE#NAME`).
    #[arg(long, short = 'r', value_name = "REGEX")]
    pub run: Option<String>,
    /// List every test (not only failures) with what it printed.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Report coverage: per file, the lines tests reached.
    #[arg(long, short = 'c')]
    pub coverage: bool,
    /// Exit non-zero when the coverage is below this percentage (implies --coverage).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub threshold: f64,
    /// Output format: `pretty` (text) or `json` (`opa test --format json`'s
    /// shape; with --coverage, OPA's coverage report).
    #[arg(long, short = 'f', default_value = "pretty", value_parser = ["pretty", "json"])]
    pub format: String,
    /// Time limit per test (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Skipped (`todo_test_*`) tests do not make the exit status non-zero.
    #[arg(long, short = 'z')]
    pub exit_zero_on_skipped: bool,
    /// Fail when no test ran.
    #[arg(long)]
    pub fail_on_empty: bool,
    /// Test one server's layered decision on fixture files (needs --server).
    #[arg(
        long,
        value_name = "SERVERS_TOML",
        requires = "server",
        conflicts_with_all = ["coverage", "threshold"]
    )]
    pub config: Option<PathBuf>,
    /// The server of --config whose decision the fixtures test.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub server: Option<String>,
}

pub fn run(a: TestArgs) -> anyhow::Result<()> {
    if !(0.0..=100.0).contains(&a.threshold) {
        anyhow::bail!(
            "--threshold {}: a percentage between 0 and 100",
            a.threshold
        );
    }
    let run = a
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--run")?;
    if let (Some(config), Some(server)) = (&a.config, &a.server) {
        return super::fixtures::run(config, server, &a, run.as_ref());
    }
    let opts = TestOptions {
        run,
        coverage: a.coverage || a.threshold > 0.0,
        timeout: a.timeout,
    };
    let mut all = TestReport::default();
    for p in &a.paths {
        let is_fixture = p.is_file()
            && p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if is_fixture {
            anyhow::bail!(
                "{} looks like a fixture file: test it with --config servers.toml --server NAME",
                p.display()
            );
        }
        let bundle = crate::bundle::load_bundle(p, &crate::bundle::BundleLimits::default())?;
        let lint = crate::bundle::lint::lint(&bundle, false)?;
        for w in &lint.warnings {
            eprintln!("WARN {w}");
        }
        if !lint.errors.is_empty() {
            for e in &lint.errors {
                eprintln!("ERROR {e}");
            }
            anyhow::bail!("{}: {} lint error(s)", p.display(), lint.errors.len());
        }
        all.merge(testrun::run_tests_with(&bundle, &opts)?);
    }
    print_report(&a, &all, opts.coverage);
    exit_status(&a, &all, opts.coverage)
}

fn print_report(a: &TestArgs, all: &TestReport, coverage: bool) {
    let json = a.format == "json";
    match (json, coverage) {
        // OPA prints the coverage report instead of the results.
        (true, true) => println!(
            "{}", // stdout-ok
            serde_json::to_string_pretty(&all.coverage.report()).unwrap_or_default()
        ),
        (true, false) => println!("{}", report::json(all)), // stdout-ok
        (false, _) => {
            print!("{}", report::pretty(all, a.verbose)); // stdout-ok
            if coverage {
                print!("{}", report::coverage_text(&all.coverage.report())); // stdout-ok
            }
        }
    }
}

fn exit_status(a: &TestArgs, all: &TestReport, coverage: bool) -> anyhow::Result<()> {
    let c = all.counts();
    if all.results.is_empty() && a.fail_on_empty {
        return Err(ExitStatus::new(1, "no tests were run").into());
    }
    let skipped_fail = c.skip > 0 && !a.exit_zero_on_skipped;
    if c.fail > 0 || c.error > 0 || skipped_fail || all.failed() > 0 {
        return Err(ExitStatus::new(2, "").into());
    }
    if coverage {
        let got = all.coverage.report().coverage;
        if got < a.threshold {
            return Err(ExitStatus::new(
                2,
                format!(
                    "Code coverage threshold not met: got {got:.2} instead of {:.2}",
                    a.threshold
                ),
            )
            .into());
        }
    }
    Ok(())
}
