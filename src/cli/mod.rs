//! Command-line surface. `main.rs` only parses and dispatches; each command
//! lives in its own module here.

pub mod bundle;
mod config;
pub mod demo;
mod fixtures;
pub mod governance;
pub mod import;
mod install;
pub mod lint;
pub mod logging;
pub mod oci;
pub mod policy_server;
pub mod proxy;
pub mod replay;
mod status;
mod test;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "gavel",
    version,
    about = "Transparent MCP proxy that enforces per-server Rego policy on every agent tool call"
)]
pub struct Cli {
    /// Write gavel's own log here instead of stderr (stdout is the protocol).
    #[arg(long, global = true)]
    pub log_file: Option<PathBuf>,
    /// Log filter, RUST_LOG syntax (e.g. `info`, `gavel=debug`).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (overrides `[metrics] listen`).
    /// A port already taken (another gavel) is a warning, not an error.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve MCP on stdin/stdout in front of the servers in a config file.
    Run {
        #[arg(long, short, default_value = "servers.toml")]
        config: PathBuf,
    },
    /// Serve MCP over streamable HTTP (http://ADDR/mcp) in front of the
    /// servers in a config file: each HTTP session gets its own upstreams.
    Serve(proxy::ServeArgs),
    /// Serve gavel's agent tools alone (gavel__check, gavel__limits,
    /// gavel__why, the gavel://policy resources) over stdio, or HTTP with
    /// --http: gavel's decisions for frameworks that call tools themselves.
    PolicyServer(policy_server::PolicyServerArgs),
    /// Wrap one server command with no config file: `gavel wrap -- npx -y some-server`.
    Wrap {
        /// Server name (used in logs and policy input).
        #[arg(long, default_value = "server")]
        name: String,
        /// Policy bundle(s) for the server (directory or .tar.gz); repeat for layers.
        #[arg(long)]
        bundle: Vec<PathBuf>,
        /// Decision log file (JSON lines).
        #[arg(long)]
        decision_log: Option<PathBuf>,
        /// Policy evaluation limit (`[policy] eval_timeout` of a config,
        /// default 100ms): raise it for heavy bundles or a loaded machine.
        #[arg(long, value_parser = crate::config::serve::positive_duration)]
        eval_timeout: Option<std::time::Duration>,
        /// The server command and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Convert an agent host's MCP config (Claude Desktop, Claude Code, Cursor,
    /// VS Code, Windsurf, Zed, Codex CLI, Gemini CLI, Continue) into servers.toml.
    Import {
        /// The host's config file (JSON/JSONC, Codex TOML or Continue YAML).
        file: PathBuf,
        /// Read the file as this host's config (default: told by its name and contents).
        #[arg(long, value_enum)]
        host: Option<import::Host>,
        /// Where to write the servers.toml.
        #[arg(long, short, default_value = "servers.toml")]
        output: PathBuf,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Put gavel in front of a host's MCP servers: import them into a
    /// servers.toml and rewrite the host's config to launch gavel (backup first).
    Install(install::InstallArgs),
    /// Restore a host config that `gavel install` rewrote.
    Uninstall(install::UninstallArgs),
    /// Start gavel on a config and drive a short scripted agent session through it.
    Demo {
        #[arg(long, short, default_value = "servers.toml")]
        config: PathBuf,
    },
    /// Run a bundle's `test_*` rules as `opa test` does (`--run`, `--verbose`,
    /// `--coverage`, `--format json`); with `--config` and `--server`, run
    /// fixture files through that server's whole layered decision. Exit
    /// status 2 when a test fails, errors or is skipped.
    Test(test::TestArgs),
    /// Start a config's servers, list their tools and check each server's
    /// policy against them: tool and argument names the servers do not
    /// have, string-prefix path scoping, tools a default-allow policy never
    /// names. Non-zero exit at or above --fail-on.
    Lint(lint::LintArgs),
    /// Build, sign, verify and inspect policy bundles (OPA-compatible).
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Re-decide every input of a decision log with a candidate policy and
    /// report the flips (allow→deny, deny→allow) by tool and reason.
    Replay {
        /// The decision log (JSON lines, as `[log] decisions` writes it).
        #[arg(long)]
        log: PathBuf,
        /// Candidate bundle (directory, .tar.gz or oci://…); repeat for layers. With
        /// --config it replaces the configured bundle of the same name.
        #[arg(long, visible_alias = "candidate")]
        bundle: Vec<String>,
        /// Replay each server with its configured layers (servers.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this server's records.
        #[arg(long)]
        server: Option<String>,
        /// Only the records decided as this persona (`labels.persona`); with
        /// --config, each server with that persona's layers, a candidate
        /// replacing the persona's (or any configured) bundle of its name.
        #[arg(long)]
        persona: Option<String>,
        /// Exit non-zero when more than N decisions flip (default 0), when a
        /// line is not a decision record, or when no record could be replayed
        /// at all: a CI gate.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0")]
        fail_on_flip: Option<u64>,
        /// Exit non-zero when more than N records cannot be replayed
        /// faithfully (masked inputs the policy reads, clock or random builtins).
        #[arg(long, value_name = "N")]
        max_not_replayable: Option<u64>,
        /// The summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show every running gavel on this machine: policies (bundle revisions,
    /// digests, signers, errors) and upstreams (phase, restarts, withheld names).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a JSON Schema of gavel's contracts.
    Schema {
        #[command(subcommand)]
        which: SchemaCommand,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Say in plain language what a policy allows, or why one logged decision came out as it did.
    Explain(governance::ExplainArgs),
    /// Write a self-contained HTML report over a decision log.
    Report(governance::ReportArgs),
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Pack a bundle directory into a .tar.gz (as `opa build` lays it out).
    Build {
        dir: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// Write this revision into .manifest (before signing).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Sign a bundle (OPA's .signatures.json: one JWT over every file's hash):
    /// a directory gets <dir>/.signatures.json; a .tar.gz from `bundle build`
    /// is re-packed with it inside (build → sign → push).
    Sign {
        /// A bundle directory or .tar.gz.
        bundle: PathBuf,
        /// Signing key: PEM private key file, or a file holding the HMAC secret.
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "RS256")]
        algorithm: String,
        #[arg(long)]
        keyid: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Verify a bundle's signature with a public key (or HMAC secret) file.
    Verify(bundle::VerifyArgs),
    /// Show a bundle's manifest, digest, files and signature claims.
    Inspect { bundle: PathBuf },
    /// Push a bundle (.tar.gz, or a directory packed on the way) to a
    /// registry as OPA's OCI artifact; prints the digest to pin.
    Push {
        bundle: PathBuf,
        /// oci://REGISTRY/REPOSITORY:TAG
        reference: String,
        #[command(flatten)]
        registry: oci::RegistryArgs,
    },
    /// Pull a bundle from a registry (digest checked) into a .tar.gz, and/or
    /// with --server verify it as that server would (keys, own tests,
    /// compile) and store it in the bundle cache for an offline start.
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST
        reference: String,
        #[arg(long, short, required_unless_present = "server")]
        output: Option<PathBuf>,
        /// The server (in --config) whose bundle this is: verify with its
        /// keys and store in the cache it starts from.
        #[arg(long, requires = "config")]
        server: Option<String>,
        #[command(flatten)]
        registry: oci::RegistryArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// The policy input (`input`), versioned.
    Input,
    /// The decision a policy returns and gavel completes, versioned.
    Decision,
    /// What a result rule returns, and its `output` and `item` inputs, versioned.
    Result,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a config and print the effective config with secrets masked.
    Check {
        #[arg(long, short, default_value = "servers.toml")]
        config: PathBuf,
    },
}

/// One line of command output on stdout (CLI commands only; never in `run`
/// or `wrap`, where stdout is the protocol).
/// A command's outcome that is not a plain failure: the process exits with
/// `code` (e.g. `gavel test`'s 2, as `opa test`), printing `message` if any.
#[derive(Debug)]
pub struct ExitStatus {
    pub code: u8,
    pub message: String,
}

impl ExitStatus {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ExitStatus {}

pub fn say(line: impl std::fmt::Display) {
    println!("{line}"); // stdout-ok
}

async fn serve_metrics(addr: Option<std::net::SocketAddr>) -> Option<tokio::task::JoinHandle<()>> {
    crate::audit::metrics::serve(&addr?.to_string()).await
}

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The global flags, apart from the command: every proxying command
/// starts logging and metrics from them (a flag wins over the config).
pub struct Globals {
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    metrics_listen: Option<std::net::SocketAddr>,
}

impl Globals {
    /// gavel's own log: `--log-file`/`--log-level`, else `[log]` of `cfg`.
    fn logging(&self, cfg: Option<&Config>) -> anyhow::Result<logging::LogGuard> {
        let log = cfg.map(|c| &c.log);
        logging::init(
            self.log_file
                .as_deref()
                .or(log.and_then(|l| l.file.as_deref())),
            self.log_level
                .as_deref()
                .or(log.and_then(|l| l.level.as_deref())),
        )
    }

    /// The metrics endpoint: `--metrics-listen`, else `configured`.
    async fn metrics(
        &self,
        configured: Option<std::net::SocketAddr>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        serve_metrics(self.metrics_listen.or(configured)).await
    }
}

/// Runs one parsed command line: a dispatcher, each command in its own
/// function (most in their own module).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        log_file,
        log_level,
        metrics_listen,
        command,
    } = cli;
    let g = Globals {
        log_file,
        log_level,
        metrics_listen,
    };
    match command {
        Command::Run { config } => proxy::run(&g, &config).await,
        Command::Serve(args) => proxy::serve(&g, args).await,
        Command::PolicyServer(args) => policy_server::policy_server(&g, args).await,
        Command::Wrap {
            name,
            bundle,
            decision_log,
            eval_timeout,
            command,
        } => proxy::wrap(&g, &name, &bundle, decision_log, eval_timeout, command).await,
        Command::Import {
            file,
            host,
            output,
            force,
        } => import::run(&file, &output, force, host),
        Command::Install(args) => install::install(args),
        Command::Uninstall(args) => install::uninstall(args),
        Command::Demo { config } => demo::run(&config, g.log_file.as_deref()).await,
        Command::Test(args) => test::run(args),
        Command::Lint(args) => lint::run(args).await,
        Command::Bundle {
            command: command @ (BundleCommand::Push { .. } | BundleCommand::Pull { .. }),
        } => oci::run(command).await,
        Command::Bundle { command } => bundle::bundle_command(command),
        Command::Replay {
            log,
            bundle,
            config,
            server,
            persona,
            fail_on_flip,
            max_not_replayable,
            json,
        } => replay::run(replay::Args {
            log,
            bundles: bundle,
            config,
            server,
            persona,
            fail_on_flip,
            max_not_replayable,
            json,
        }),
        Command::Status { json } => status::run(json),
        Command::Schema { which } => schema(which),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config::check(&config).await,
        Command::Explain(args) => governance::explain(args),
        Command::Report(args) => governance::report(args),
    }
}

/// `gavel schema`: the JSON Schemas built into the binary.
fn schema(which: SchemaCommand) -> anyhow::Result<()> {
    let text = match which {
        SchemaCommand::Input => include_str!("../../schemas/input.v1.json"),
        SchemaCommand::Decision => include_str!("../../schemas/decision.v1.json"),
        SchemaCommand::Result => include_str!("../../schemas/result.v1.json"),
    };
    print!("{text}"); // stdout-ok
    Ok(())
}
