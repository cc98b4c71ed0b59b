//! Registry credentials, as docker users expect them, first match wins:
//! 1. `[oci.registries."host"] username` + `password_env` in servers.toml;
//! 2. `GAVEL_REGISTRY_USERNAME` / `GAVEL_REGISTRY_PASSWORD` (CI), for the one
//!    registry `GAVEL_REGISTRY` names (`host[:port]`) — never sent to any
//!    other registry;
//! 3. docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): `credHelpers[host]`, then `auths[host]`
//!    (`auth` = base64 `user:password`, or `username`/`password`), then
//!    `credsStore`. An `identitytoken` is an OAuth2 refresh token docker
//!    exchanges for an access token; oci-client cannot, and sending it as a
//!    bearer token would be wrong, so gavel refuses it and says what works;
//! 4. anonymous.
//!
//! Credential helpers are run as `docker-credential-<name> get` with the
//! registry on stdin, with a timeout; their output never reaches a log.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::settings::OciSettings;

/// Where credentials came from (logged; never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Config,
    Environment,
    DockerHelper(String),
    DockerConfig,
    Anonymous,
}

#[derive(Debug, thiserror::Error)]
#[error("credentials for registry {registry}: {message}")]
pub struct AuthError {
    pub registry: String,
    pub message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Credentials for `registry` (`host` or `host:port`).
pub fn credentials(
    settings: &OciSettings,
    registry: &str,
) -> Result<(RegistryAuth, CredentialSource), AuthError> {
    let err = |m: String| AuthError {
        registry: registry.to_string(),
        message: m,
    };
    if let Some(r) = settings.registries.get(registry)
        && let (Some(user), Some(var)) = (&r.username, &r.password_env)
    {
        let pw = std::env::var(var).map_err(|_| {
            err(format!(
                "oci.registries.{registry:?}.password_env names {var}, which is not set"
            ))
        })?;
        return Ok((
            RegistryAuth::Basic(user.clone(), pw),
            CredentialSource::Config,
        ));
    }
    if let Some(a) = from_environment(registry, &|k| std::env::var(k).ok()).map_err(err)? {
        return Ok((a, CredentialSource::Environment));
    }
    let Some(path) = docker_config_path() else {
        return Ok((RegistryAuth::Anonymous, CredentialSource::Anonymous));
    };
    let cfg: DockerConfig = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            err(format!(
                "{}: not valid docker config JSON: {e}",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerConfig::default(),
        Err(e) => return Err(err(format!("{}: {e}", path.display()))),
    };
    from_docker_config(&cfg, registry, None).map_err(err)
}

/// `GAVEL_REGISTRY_USERNAME`/`_PASSWORD` for the registry `GAVEL_REGISTRY`
/// names; `None` for any other registry. Credentials without a registry
/// named are an error (they would otherwise go to every registry).
fn from_environment(
    registry: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RegistryAuth>, String> {
    let (Some(u), Some(p)) = (
        env("GAVEL_REGISTRY_USERNAME"),
        env("GAVEL_REGISTRY_PASSWORD"),
    ) else {
        return Ok(None);
    };
    match env("GAVEL_REGISTRY") {
        None => Err(
            "GAVEL_REGISTRY_USERNAME/GAVEL_REGISTRY_PASSWORD are set but GAVEL_REGISTRY does not name the registry (host[:port]) they are for; gavel does not send them to every registry"
                .into(),
        ),
        Some(r) if r.trim().eq_ignore_ascii_case(registry) => Ok(Some(RegistryAuth::Basic(u, p))),
        Some(_) => Ok(None),
    }
}

/// `helper_dir`: where to find helpers (tests); `None` searches `PATH`.
fn from_docker_config(
    cfg: &DockerConfig,
    registry: &str,
    helper_dir: Option<&std::path::Path>,
) -> Result<(RegistryAuth, CredentialSource), String> {
    if let Some(helper) = cfg.cred_helpers.get(registry) {
        return helper_get(helper, registry, helper_dir)
            .map(|a| (a, CredentialSource::DockerHelper(helper.clone())));
    }
    // docker writes `auths` keys as the bare host or as a URL.
    let entry = cfg.auths.iter().find(|(k, _)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next() == Some(registry)
    });
    if let Some((_, a)) = entry {
        if a.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(format!(
                "docker config's auths entry for {registry} holds an identitytoken (an OAuth2 refresh token that docker exchanges for an access token; gavel does not): give gavel a username and password instead ([oci.registries.\"{registry}\"] username + password_env, or GAVEL_REGISTRY with GAVEL_REGISTRY_USERNAME/PASSWORD), or a credential helper"
            ));
        }
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            return Ok((
                RegistryAuth::Basic(u.clone(), p.clone()),
                CredentialSource::DockerConfig,
            ));
        }
        if let Some(b64) = &a.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| "auths entry: `auth` is not base64".to_string())?;
            let text = String::from_utf8(raw)
                .map_err(|_| "auths entry: `auth` is not UTF-8".to_string())?;
            let (u, p) = text
                .split_once(':')
                .ok_or("auths entry: `auth` is not base64 of user:password")?;
            return Ok((
                RegistryAuth::Basic(u.to_string(), p.to_string()),
                CredentialSource::DockerConfig,
            ));
        }
    }
    if let Some(store) = &cfg.creds_store {
        return helper_get(store, registry, helper_dir)
            .map(|a| (a, CredentialSource::DockerHelper(store.clone())));
    }
    Ok((RegistryAuth::Anonymous, CredentialSource::Anonymous))
}

/// A credential helper's answer is a small JSON object.
const HELPER_OUTPUT_LIMIT: usize = 64 << 10;
/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// `docker-credential-<helper> get`: registry on stdin, `{Username, Secret}`
/// out. "credentials not found" means anonymous, as docker treats it.
fn helper_get(
    helper: &str,
    registry: &str,
    helper_dir: Option<&std::path::Path>,
) -> Result<RegistryAuth, String> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "credential helper name {helper:?} is not a plain name"
        ));
    }
    let prog = format!("docker-credential-{helper}");
    let program = match helper_dir {
        Some(d) => d.join(&prog),
        None => PathBuf::from(&prog),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {prog} (docker config names it): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let (stdout, status) = helper_output(&mut child, &prog)?;
    helper_answer(&prog, status, &stdout)
}

fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The helper's stdout and exit status, both within [`HELPER_TIMEOUT`]; a
/// helper that overruns the time or [`HELPER_OUTPUT_LIMIT`] is killed.
fn helper_output(
    child: &mut std::process::Child,
    prog: &str,
) -> Result<(Vec<u8>, std::process::ExitStatus), String> {
    // Read stdout while the helper runs (a helper that prints more than a
    // pipe holds would otherwise block until the deadline), at most
    // HELPER_OUTPUT_LIMIT bytes: credentials are small.
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = Vec::new();
            let r = stdout
                .take(HELPER_OUTPUT_LIMIT as u64 + 1)
                .read_to_end(&mut buf);
            let _ = tx.send(r.map(|_| buf));
        });
    }
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    let stdout = match rx.recv_timeout(HELPER_TIMEOUT) {
        Ok(Ok(b)) if b.len() > HELPER_OUTPUT_LIMIT => {
            kill(child);
            return Err(format!(
                "{prog} get printed more than {HELPER_OUTPUT_LIMIT} bytes; it was stopped"
            ));
        }
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            kill(child);
            return Err(format!("{prog} get: {e}"));
        }
        Err(_) => {
            kill(child);
            return Err(format!(
                "{prog} get did not answer within {} s",
                HELPER_TIMEOUT.as_secs()
            ));
        }
    };
    // Its output is complete (stdout closed); it has until the deadline to exit.
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok((stdout, st)),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                kill(child);
                return Err(format!(
                    "{prog} get did not exit within {} s",
                    HELPER_TIMEOUT.as_secs()
                ));
            }
        }
    }
}

/// The credentials in a helper's answer.
fn helper_answer(
    prog: &str,
    status: std::process::ExitStatus,
    stdout: &[u8],
) -> Result<RegistryAuth, String> {
    let text = String::from_utf8_lossy(stdout);
    if !status.success() {
        if text.contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        return Err(format!("{prog} get failed ({status})"));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(stdout)
        .map_err(|_| format!("{prog} get printed something that is not {{Username, Secret}}"))?;
    Ok(if h.username == "<token>" {
        RegistryAuth::Bearer(h.secret)
    } else {
        RegistryAuth::Basic(h.username, h.secret)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(j: &str) -> DockerConfig {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn docker_config_auths_like_docker() {
        let cfg = parse(
            r#"{"auths": {"https://reg.example:5000/v1/": {"auth": "dXNlcjpwYXNz"}, "other": {"identitytoken": "tok"}}}"#,
        );
        let (a, src) = from_docker_config(&cfg, "reg.example:5000", None).unwrap();
        assert!(matches!(a, RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        assert_eq!(src, CredentialSource::DockerConfig);
        // A refresh token is not a bearer token: refused, saying what works.
        let e = from_docker_config(&cfg, "other", None).unwrap_err();
        assert!(
            e.contains("identitytoken")
                && e.contains("refresh token")
                && e.contains("password_env"),
            "{e}"
        );
        let (a, src) = from_docker_config(&cfg, "nowhere", None).unwrap();
        assert!(matches!(a, RegistryAuth::Anonymous));
        assert_eq!(src, CredentialSource::Anonymous);
        let bad = parse(r#"{"auths": {"r": {"auth": "!!!"}}}"#);
        assert!(
            from_docker_config(&bad, "r", None)
                .unwrap_err()
                .contains("base64")
        );
    }

    #[test]
    fn environment_credentials_go_to_the_named_registry_only() {
        let env = |reg: Option<&'static str>| {
            move |k: &str| match k {
                "GAVEL_REGISTRY_USERNAME" => Some("ci".to_string()),
                "GAVEL_REGISTRY_PASSWORD" => Some("pw".to_string()),
                "GAVEL_REGISTRY" => reg.map(String::from),
                _ => None,
            }
        };
        let named = env(Some("reg.example:5000"));
        assert!(matches!(
            from_environment("reg.example:5000", &named).unwrap(),
            Some(RegistryAuth::Basic(u, p)) if u == "ci" && p == "pw"
        ));
        assert!(from_environment("ghcr.io", &named).unwrap().is_none());
        let e = from_environment("ghcr.io", &env(None)).unwrap_err();
        assert!(e.contains("GAVEL_REGISTRY does not name"), "{e}");
        assert!(from_environment("x", &|_| None).unwrap().is_none());
    }

    #[test]
    fn credential_helpers_run_with_the_registry_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-gaveltest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread reg\nif [ \"$reg\" = \"known:5000\" ]; then echo '{\"Username\":\"u\",\"Secret\":\"s\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = Some(dir.path());
        let cfg =
            parse(r#"{"credHelpers": {"known:5000": "gaveltest"}, "credsStore": "gaveltest"}"#);
        let (a, src) = from_docker_config(&cfg, "known:5000", d).unwrap();
        assert!(matches!(a, RegistryAuth::Basic(u, s) if u == "u" && s == "s"));
        assert_eq!(src, CredentialSource::DockerHelper("gaveltest".into()));
        let (a, _) = from_docker_config(&cfg, "unknown:1", d).unwrap();
        assert!(
            matches!(a, RegistryAuth::Anonymous),
            "not found = anonymous"
        );
        // A chatty helper is read while it runs and stopped at the cap,
        // not left blocked on a full pipe until the deadline.
        let chatty = dir.path().join("docker-credential-chatty");
        std::fs::write(
            &chatty,
            "#!/bin/sh
head -c 10000000 /dev/zero | tr '\\0' x
echo '{\"Username\":\"u\",\"Secret\":\"s\"}'
",
        )
        .unwrap();
        std::fs::set_permissions(&chatty, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = parse(r#"{"credHelpers": {"loud:1": "chatty"}}"#);
        let e = from_docker_config(&cfg, "loud:1", d).unwrap_err();
        assert!(e.contains("printed more than 65536 bytes"), "{e}");
        let cfg = parse(r#"{"credHelpers": {"x": "no-such-helper-here"}}"#);
        assert!(
            from_docker_config(&cfg, "x", d)
                .unwrap_err()
                .contains("cannot run")
        );
    }
}
