//! gavel's command line. Everything lives in the library; this only parses
//! arguments and reports a failure as one clear line on stderr.

use clap::Parser;

/// One thread: a proxy hop is latency-bound, and cross-thread wake-ups cost
/// more than they give on the small per-call work gavel does. That thread
/// and the blocking pool's get an evaluation thread's stack and are marked
/// as hosts, so a small policy evaluation runs where it is asked for
/// instead of being handed to another thread (`decision::engine::run`).
fn main() -> std::process::ExitCode {
    let host = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_stack_size(gavel::decision::engine::STACK_BYTES)
            .on_thread_start(gavel::decision::engine::mark_host)
            .build()?;
        gavel::decision::engine::mark_host();
        Ok::<_, std::io::Error>(rt.block_on(run()))
    };
    let started = std::thread::Builder::new()
        .name("gavel".into())
        .stack_size(gavel::decision::engine::STACK_BYTES)
        .spawn(host)
        .map(|t| t.join());
    match started {
        Ok(Ok(Ok(code))) => code,
        Ok(Ok(Err(e))) | Err(e) => {
            eprintln!("gavel: could not start its runtime: {e}");
            std::process::ExitCode::FAILURE
        }
        Ok(Err(_)) => {
            eprintln!("gavel: the main thread panicked");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
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
