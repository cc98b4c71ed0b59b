//! gavel's command line. Everything lives in the library; this only parses
//! arguments and reports a failure as one clear line on stderr.

use clap::Parser;

/// One thread: a proxy hop is latency-bound, and cross-thread wake-ups cost
/// more than they give on the small per-call work gavel does.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = gavel::cli::Cli::parse();
    match gavel::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(s) = e.downcast_ref::<gavel::cli::ExitStatus>() {
                if !s.message.is_empty() {
                    eprintln!("gavel: {}", s.message);
                }
                return std::process::ExitCode::from(s.code);
            }
            eprintln!("gavel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
