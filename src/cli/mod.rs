//! Command-line surface. `main.rs` only parses and dispatches; each command
//! lives in its own module here.

pub mod bundle;
pub mod demo;
pub mod governance;
pub mod logging;
pub mod oci;
pub mod replay;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::gateway::Gateway;

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
    Serve {
        #[arg(long, short, default_value = "servers.toml")]
        config: PathBuf,
        /// Address to listen on (loopback unless TLS or --behind-proxy);
        /// overrides `[serve] listen` (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Another accepted `Host` header value (name or name:port); repeat.
        /// Added to `[serve] allowed_hosts`.
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// Another accepted browser `Origin` (scheme://host[:port|:*]);
        /// repeat. Added to `[serve] allowed_origins`.
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        /// A TLS-terminating proxy is in front: allow a non-loopback address
        /// (or `[serve] behind_proxy = true`).
        #[arg(long)]
        behind_proxy: bool,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key);
        /// overrides `[serve] tls_cert`/`tls_key`.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// At most this many host sessions at once (each starts its own
        /// upstreams); more get 503 until one closes or idles out
        /// (--session-idle-timeout).
        /// Overrides `[serve] max_sessions` (default 256).
        #[arg(long)]
        max_sessions: Option<usize>,
        /// At shutdown, how long in-flight requests may take to finish
        /// before every session is closed (e.g. 30s, 2m); overrides
        /// `[serve] drain_timeout` (default 30s).
        #[arg(long, value_parser = humantime::parse_duration)]
        drain_timeout: Option<std::time::Duration>,
        /// With `[auth]`: sessions per token user (`[serve] max_sessions_per_user`, 16).
        #[arg(long, value_parser = crate::config::serve::positive_count)]
        max_sessions_per_user: Option<usize>,
        /// Close a session idle this long (`[serve] session_idle_timeout`, 5m).
        #[arg(long, value_parser = crate::config::serve::positive_duration)]
        session_idle_timeout: Option<std::time::Duration>,
        /// Connections at once; more get 503 (`[serve] max_connections`, 1024).
        #[arg(long, value_parser = crate::config::serve::positive_count)]
        max_connections: Option<usize>,
        /// Close a connection whose request head is slower (`[serve] header_timeout`, 30s).
        #[arg(long, value_parser = crate::config::serve::positive_duration)]
        header_timeout: Option<std::time::Duration>,
        /// Answer 408 to a slower request body (`[serve] body_timeout`, 30s).
        #[arg(long, value_parser = crate::config::serve::positive_duration)]
        body_timeout: Option<std::time::Duration>,
    },
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
        /// The server command and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Convert a Claude Desktop / Cursor / VS Code MCP config into servers.toml.
    Import {
        /// The host's JSON config file.
        file: PathBuf,
        /// Where to write the servers.toml.
        #[arg(long, short, default_value = "servers.toml")]
        output: PathBuf,
        /// Overwrite an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Start gavel on a config and drive a short scripted agent session through it.
    Demo {
        #[arg(long, short, default_value = "servers.toml")]
        config: PathBuf,
    },
    /// Run a bundle's `test_*` rules (like `opa test`); non-zero exit on failure.
    Test {
        /// Bundle directories or .tar.gz files.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
    },
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
        #[arg(long)]
        bundle: Vec<String>,
        /// Replay each server with its configured layers (servers.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this server's records.
        #[arg(long)]
        server: Option<String>,
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
    Verify {
        bundle: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "RS256")]
        algorithm: String,
        /// Key id to use (default: the token's `kid`).
        #[arg(long, default_value = "")]
        keyid: String,
        #[arg(long, default_value = "")]
        scope: String,
        #[arg(long)]
        exclude: Vec<String>,
    },
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
pub fn say(line: impl std::fmt::Display) {
    println!("{line}"); // stdout-ok
}

async fn serve_metrics(addr: Option<std::net::SocketAddr>) -> Option<tokio::task::JoinHandle<()>> {
    crate::audit::metrics::serve(&addr?.to_string()).await
}

pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let cfg = load_config(&config)?;
            let _guard = logging::init(
                cli.log_file.as_deref().or(cfg.log.file.as_deref()),
                cli.log_level.as_deref().or(cfg.log.level.as_deref()),
            )?;
            tracing::info!(config = %config.display(), servers = cfg.enabled_servers().count(), "gavel starting");
            if cfg.auth.is_some() {
                // Not an error: one config may serve both fronts.
                tracing::warn!(
                    "[auth] is ignored by gavel run: over stdio there is no bearer token, so the user and agent come from [identity.*]; use gavel serve for token identity"
                );
            }
            if cfg.serve != crate::config::ServeSettings::default() {
                // Not a warning: one config may serve both fronts.
                tracing::info!(
                    "[serve] applies to gavel serve only; gavel run speaks MCP on stdin/stdout"
                );
            }
            let _metrics = serve_metrics(cli.metrics_listen.or(cfg.metrics_listen)).await;
            let gw = Gateway::start(cfg).await?;
            crate::front::stdio::serve_stdio(gw).await
        }
        Command::Serve {
            config,
            listen,
            allowed_hosts,
            allowed_origins,
            behind_proxy,
            tls_cert,
            tls_key,
            max_sessions,
            drain_timeout,
            max_sessions_per_user,
            session_idle_timeout,
            max_connections,
            header_timeout,
            body_timeout,
        } => {
            let cfg = load_config(&config)?;
            let _guard = logging::init(
                cli.log_file.as_deref().or(cfg.log.file.as_deref()),
                cli.log_level.as_deref().or(cfg.log.level.as_deref()),
            )?;
            let _metrics = serve_metrics(cli.metrics_listen.or(cfg.metrics_listen)).await;
            // Flags override `[serve]`; list flags add to its lists.
            let serve = &cfg.serve;
            let opts = crate::front::http::HttpOptions {
                listen: listen.unwrap_or(serve.listen),
                allowed_hosts: serve
                    .allowed_hosts
                    .iter()
                    .cloned()
                    .chain(allowed_hosts)
                    .collect(),
                allowed_origins: serve
                    .allowed_origins
                    .iter()
                    .cloned()
                    .chain(allowed_origins)
                    .collect(),
                behind_proxy: behind_proxy || serve.behind_proxy,
                tls: tls_cert.zip(tls_key).or_else(|| serve.tls.clone()),
                max_sessions: max_sessions.unwrap_or(serve.max_sessions).max(1),
                drain_timeout: drain_timeout.unwrap_or(serve.drain_timeout),
                max_sessions_per_user: max_sessions_per_user.unwrap_or(serve.max_sessions_per_user),
                session_idle_timeout: session_idle_timeout.unwrap_or(serve.session_idle_timeout),
                conn: crate::transport::conn::ConnLimits {
                    max_connections: max_connections.unwrap_or(serve.max_connections),
                    header_timeout: header_timeout.unwrap_or(serve.header_timeout),
                },
                body_timeout: body_timeout.unwrap_or(serve.body_timeout),
            };
            let gw = Gateway::start(cfg).await?;
            crate::front::http::serve_http(gw, opts).await
        }
        Command::Wrap {
            name,
            bundle,
            decision_log,
            mut command,
        } => {
            let program = command.remove(0);
            let mut cfg = Config::single_stdio_server(&name, program, command)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(server) = cfg.servers.get_mut(&name) {
                server.bundles = bundle
                    .iter()
                    .map(|b| {
                        std::path::absolute(b)
                            .unwrap_or_else(|_| b.clone())
                            .display()
                            .to_string()
                    })
                    .collect();
            }
            cfg.log.decisions = decision_log;
            let _guard = logging::init(cli.log_file.as_deref(), cli.log_level.as_deref())?;
            let _metrics = serve_metrics(cli.metrics_listen).await;
            let gw = Gateway::start(cfg).await?;
            crate::front::stdio::serve_stdio(gw).await
        }
        Command::Import {
            file,
            output,
            force,
        } => import(&file, &output, force),
        Command::Demo { config } => demo::run(&config, cli.log_file.as_deref()).await,
        Command::Test { bundles } => bundle::test_bundles(&bundles),
        Command::Bundle {
            command: command @ (BundleCommand::Push { .. } | BundleCommand::Pull { .. }),
        } => oci::run(command).await,
        Command::Bundle { command } => bundle::bundle_command(command),
        Command::Replay {
            log,
            bundle,
            config,
            server,
            fail_on_flip,
            max_not_replayable,
            json,
        } => replay::run(replay::Args {
            log,
            bundles: bundle,
            config,
            server,
            fail_on_flip,
            max_not_replayable,
            json,
        }),
        Command::Status { json } => {
            let all = crate::status::read_all(&crate::status::state_dir());
            if json {
                say(serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                say("no running gavel instances");
            } else {
                for i in &all {
                    say(format!(
                        "gavel pid {} (since {}, config {})",
                        i["pid"],
                        i["started"].as_str().unwrap_or("?"),
                        i["config"]
                    ));
                    if let Some(url) = i["serving"].as_str() {
                        say(format!(
                            "  serving {url}, {} HTTP sessions open",
                            i["http_sessions"]
                        ));
                    }
                    for (name, p) in i["policies"].as_object().into_iter().flatten() {
                        let up = &i["session"]["upstreams"][name];
                        say(format!(
                            "  {name}: upstream {} (restarts {}), policy {} {}{}",
                            up["phase"].as_str().unwrap_or("-"),
                            up["restarts"],
                            p["policy"].as_str().unwrap_or("?"),
                            p["version"].as_str().unwrap_or(""),
                            p["last_error"]
                                .as_str()
                                .map(|e| format!(" — {e}"))
                                .unwrap_or_default()
                        ));
                        for o in p["oci"].as_array().into_iter().flatten() {
                            say(format!(
                                "    {}: revision {} ({}, from {}), signer {}, activated {}, last pull {}{}",
                                o["name"].as_str().unwrap_or("?"),
                                o["active_revision"].as_str().unwrap_or("-"),
                                o["active_digest"].as_str().unwrap_or("no bundle"),
                                o["source"].as_str().unwrap_or("-"),
                                // This entry's own signer (layers can have different ones).
                                o["signer_keyid"].as_str().unwrap_or("-"),
                                o["last_successful_activation"].as_str().unwrap_or("never"),
                                o["last_successful_download"].as_str().unwrap_or("never"),
                                o["message"]
                                    .as_str()
                                    .map(|e| format!("\n      last error: {e}"))
                                    .unwrap_or_default()
                            ));
                        }
                    }
                    for w in i["session"]["withheld_names"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        say(format!(
                            "  withheld (name collision): {}",
                            w.as_str().unwrap_or("?")
                        ));
                    }
                }
            }
            Ok(())
        }
        Command::Schema { which } => {
            let text = match which {
                SchemaCommand::Input => include_str!("../../schemas/input.v1.json"),
                SchemaCommand::Decision => include_str!("../../schemas/decision.v1.json"),
            };
            print!("{text}"); // stdout-ok
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let cfg = load_config(&config)?;
            check_serve_files(&cfg)?;
            // OCI bundles are pulled (or taken from the cache) and verified
            // exactly as `gavel run` would at start.
            let enforcer = if crate::policy::supply::Supply::needed(&cfg) {
                let supply = crate::policy::supply::Supply::start(&cfg).await?;
                crate::decision::Enforcer::with_resolver(
                    &cfg,
                    crate::state::clock::from_env(),
                    supply.as_ref(),
                )?
            } else {
                crate::decision::Enforcer::from_config(&cfg)?
            };
            let mut broken = Vec::new();
            for (server, status) in enforcer.policy_status() {
                match status {
                    Ok(v) => eprintln!("policy {server}: {v}"),
                    Err(why) => broken.push(format!("server {server:?}: {why}")),
                }
            }
            if cfg.log.decisions.is_some()
                && cfg.log.on_write_error == crate::config::OnWriteError::Allow
            {
                eprintln!(
                    "warning: [log] on_write_error = \"allow\": a request whose decision record cannot be written is carried out unrecorded"
                );
            }
            if !broken.is_empty() {
                anyhow::bail!(
                    "policy unavailable (every request to these servers would be denied):\n  {}",
                    broken.join("\n  ")
                );
            }
            say(format!(
                "# {} is valid. Effective configuration (secrets masked):\n",
                config.display()
            ));
            print!("{}", cfg.render_masked()); // stdout-ok
            Ok(())
        }
        Command::Explain(args) => governance::explain(args),
        Command::Report(args) => governance::report(args),
    }
}

/// What `gavel serve` reads at start besides the config — the `[auth]` key
/// (file, environment or JWKS file) and the `[serve]` TLS pair — read by the
/// same constructors `serve` uses, so `config check` refuses what `serve`
/// would. A `jwks_url` is not fetched (serve starts without it and retries).
fn check_serve_files(cfg: &Config) -> anyhow::Result<()> {
    if let Some(auth) = &cfg.auth {
        crate::front::auth::Authenticator::new(auth, &cfg.identity)?;
    }
    if let Some((cert, key)) = &cfg.serve.tls {
        crate::front::tls::server_config(cert, key)
            .map_err(|e| anyhow::anyhow!("[serve] tls_cert/tls_key: {e}"))?;
    }
    Ok(())
}

fn import(file: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if output.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", output.display());
    }
    let gavel = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(String::from))
        .unwrap_or_else(|| "gavel".into());
    let abs_out = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
    let r = crate::config::import::import_host_config(&text, file, &abs_out, &gavel)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Refuse to write something gavel itself would not load.
    crate::config::Config::from_toml_str(&r.toml, &abs_out, &|_| Some(String::new()))
        .map_err(|e| anyhow::anyhow!("internal error: the generated config does not load: {e}"))?;
    let tmp = abs_out.with_extension("toml.tmp");
    std::fs::write(&tmp, &r.toml).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &abs_out).with_context(|| format!("writing {}", abs_out.display()))?;
    println!("Wrote {}.", abs_out.display()); // stdout-ok
    if r.not_carried.is_empty() {
        println!("Every field was carried over."); // stdout-ok
    } else {
        println!("Not carried over:"); // stdout-ok
        for n in &r.not_carried {
            println!("  - {n}"); // stdout-ok
        }
    }
    if !r.required_env.is_empty() {
        say(format!(
            "Set these environment variables for gavel: {}",
            r.required_env.join(", ")
        ));
    }
    say(format!(
        "\nReplace the servers in your host config with this one entry:\n{}",
        serde_json::to_string_pretty(&r.host_entry)?
    ));
    Ok(())
}
