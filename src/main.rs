//! gavel's command line. Everything lives in the library; this only parses
//! arguments and reports a failure as one clear line on stderr.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = gavel::cli::Cli::parse();
    match gavel::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gavel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
