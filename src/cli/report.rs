//! `gavel report`: a decision log as one self-contained HTML page.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The decision log (JSON lines).
    pub log: PathBuf,
    /// Where to write the HTML page.
    #[arg(long, short)]
    pub output: PathBuf,
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let report = crate::governance::report::Report::from_log(&a.log)?;
    let page = crate::governance::report_html::render(&report);
    std::fs::write(&a.output, page).with_context(|| format!("writing {}", a.output.display()))?;
    super::say(format!(
        "wrote {}: {} decisions ({} denied) from {}",
        a.output.display(),
        report.split.total(),
        report.split.denied,
        a.log.display()
    ));
    Ok(())
}
