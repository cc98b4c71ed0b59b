//! Registry transport and credentials as they are set up in the field,
//! through the real gavel binary against a real docker-registry: a registry
//! behind TLS signed by a private CA (`ca_file`), and credentials that live
//! only in docker's `config.json` (`auths`, `credHelpers`, `credsStore`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::oci::*;
use common::registry::TestRegistry;
use common::*;
use serde_json::{Value, json};

/// Debian's docker-registry serving HTTPS on 127.0.0.1 with `cert`/`key`.
struct TlsRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRegistry {
    fn start(cert: &Path, key: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("data").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new("docker-registry")
            .args(["serve", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("docker-registry (Debian package; scripts/setup installs it)");
        wait_for_port(port, "the TLS registry", Some(&log));
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// servers.toml pinning `reference` for server fx (k1 trusted), with its
/// own bundle cache `cache` (so a failing phase cannot fall back on what an
/// earlier phase cached) and `registry_table` as `[oci.registries."host"]`.
fn write_config(s: &Setup, cache: &str, host: &str, registry_table: &str, reference: &str) {
    s.write_config(&format!(
            "[keys.k1]\nalgorithm = \"HS256\"\nkey_file = {:?}\n\n[identity.user]\nid = \"ada\"\n\n\
             [log]\ndecisions = {:?}\n\n\
             [oci]\ncache_dir = {:?}\nmin_delay = \"100ms\"\nmax_delay = \"300ms\"\n\n\
             [oci.registries.\"{host}\"]\n{registry_table}\n\n{}bundle = {reference:?}\nkeys = [\"k1\"]\n{}",
            s.path("k1.secret").display().to_string(),
            s.path("decisions.jsonl").display().to_string(),
            s.path(cache).display().to_string(),
            fixture_server("fx", &[], &s.path("r.jsonl")),
            role("fx", reference, &["mcp/fixture"], None),
        ));
}

/// Removes every credential source but docker's config.json, which is
/// looked up in `docker_config` (never the machine's ~/.docker).
fn hermetic(cmd: &mut Command, docker_config: &Path) {
    cmd.env("DOCKER_CONFIG", docker_config)
        .env_remove("GAVEL_REGISTRY")
        .env_remove("GAVEL_REGISTRY_USERNAME")
        .env_remove("GAVEL_REGISTRY_PASSWORD");
}

/// `gavel run` on this setup with its own state dir and docker config dir.
fn launch_in(s: &Setup, state: &str, docker_config: &Path) -> tokio::process::Command {
    let mut std_cmd = Command::new(GAVEL);
    std_cmd
        .args(s.run_args())
        .env("GAVEL_STATE_DIR", s.path(state));
    hermetic(&mut std_cmd, docker_config);
    tokio::process::Command::from(std_cmd)
}

/// `gavel bundle push` with these extra arguments, hermetic credentials.
fn push_with(tb: &Path, tag: &str, extra: &[&str], docker_config: &Path) -> std::process::Output {
    let mut cmd = Command::new(GAVEL);
    cmd.args(["bundle", "push", tb.to_str().unwrap(), tag])
        .args(extra);
    hermetic(&mut cmd, docker_config);
    cmd.output().unwrap()
}

/// A docker config dir holding `config` as its config.json.
fn docker_dir(s: &Setup, name: &str, config: &Value) -> PathBuf {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// Waits until the status of the gavel in `state` shows a pull error for
/// fx, and returns that oci entry.
async fn pull_error(s: &Setup, state: &str) -> Value {
    let mut seen = Value::Null;
    eventually("the pull error is in the status", || {
        seen = status(&s.path(state))["policies"]["fx"]["oci"][0].clone();
        seen["message"].is_string()
    })
    .await;
    seen
}

/// The bundle decides: echo allowed, destructive_delete denied by its rule,
/// and the status says it came from the registry.
async fn decided_by_the_bundle(s: &Setup, state: &str, c: &Client) {
    assert_eq!(reasons(c, "echo").await, json!("allowed"));
    assert_eq!(
        reasons(c, "destructive_delete").await,
        json!(["destructive_denied"])
    );
    let oci = status(&s.path(state))["policies"]["fx"]["oci"][0].clone();
    assert_eq!(oci["active_revision"], "r1", "{oci}");
    assert_eq!(oci["source"], "registry", "{oci}");
}

/// No bundle: every call is refused before the upstream (policy_unavailable),
/// the refusal naming the reference. Returns the refusal's text.
async fn fails_closed(s: &Setup, c: &Client) -> String {
    let before = recorded_calls(&s.path("r.jsonl")).len();
    let r = call(c, "echo", json!({"text": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let sc = r.structured_content.clone().unwrap_or_default();
    assert_eq!(sc["reasons"], json!(["policy_unavailable"]), "{r:?}");
    assert!(text(&r).contains("policies/fixture:live"), "{}", text(&r));
    assert_eq!(
        recorded_calls(&s.path("r.jsonl")).len(),
        before,
        "nothing reaches the upstream"
    );
    text(&r)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_registry_with_a_private_ca() {
    let s = Setup::blank();
    keys(&s);
    let (cert, key, ca) = test_pki(&s);
    let reg = TlsRegistry::start(&cert, &key);
    let host = reg.host();
    let tag = format!("oci://{host}/policies/fixture:live");
    let no_docker = s.path("no-docker");
    std::fs::create_dir_all(&no_docker).unwrap();
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    let with_ca = format!("ca_file = {:?}", ca.display().to_string());

    // Pushing without the CA: refused, saying why.
    write_config(&s, "cache-none", &host, "", &tag);
    let out = push_with(
        &tb,
        &tag,
        &["--config", s.config().to_str().unwrap()],
        &no_docker,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
    // With the CA from --config: pushed over HTTPS.
    write_config(&s, "cache-ca", &host, &with_ca, &tag);
    let out = stdout_ok(push_with(
        &tb,
        &tag,
        &["--config", s.config().to_str().unwrap()],
        &no_docker,
    ));
    assert!(out.contains("pushed"), "{out}");

    // gavel run trusting the CA for this registry pulls and decides.
    let c = connect_cmd(launch_in(&s, "state-ca", &no_docker), TestHost::new()).await;
    decided_by_the_bundle(&s, "state-ca", &c).await;
    c.cancel().await.unwrap();

    // Without ca_file (and no insecure): the certificate is not trusted,
    // the status says so, and the server fails closed.
    write_config(&s, "cache-none", &host, "", &tag);
    let c = connect_cmd(launch_in(&s, "state-none", &no_docker), TestHost::new()).await;
    let oci = pull_error(&s, "state-none").await;
    let msg = oci["message"].as_str().unwrap();
    assert!(
        msg.contains("policies/fixture:live") && msg.contains("certificate"),
        "{oci}"
    );
    assert!(
        msg.contains("give its CA as ca_file") && !msg.contains("insecure = true"),
        "the hint names ca_file, not plain HTTP: {oci}"
    );
    assert!(oci["active_revision"].is_null(), "{oci}");
    let denial = fails_closed(&s, &c).await;
    assert!(denial.contains("certificate"), "{denial}");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_docker_config_json() {
    let reg = TestRegistry::start_with(Some(("ops", "s3cret-pw")));
    let s = Setup::blank();
    keys(&s);
    let host = reg.host();
    let tag = format!("oci://{host}/policies/fixture:live");
    let tb = tarball(&s, &bundle(&s, "r1", "r1", "", Some("k1")));
    let good = docker_dir(
        &s,
        "docker-good",
        &json!({"auths": {host.clone(): {"auth": basic("ops", "s3cret-pw")}}}),
    );
    let wrong = docker_dir(
        &s,
        "docker-wrong",
        &json!({"auths": {host.clone(): {"auth": basic("ops", "not-the-pw")}}}),
    );
    // Push reads config.json too: the wrong password is refused, the right
    // one accepted.
    let out = push_with(&tb, &tag, &["--insecure"], &wrong);
    assert!(!out.status.success(), "wrong password: push refused");
    stdout_ok(push_with(&tb, &tag, &["--insecure"], &good));

    // gavel run: no credentials in servers.toml or the environment, only in
    // $DOCKER_CONFIG/config.json.
    write_config(&s, "cache-wrong", &host, "insecure = true", &tag);
    let c = connect_cmd(launch_in(&s, "state-wrong", &wrong), TestHost::new()).await;
    let oci = pull_error(&s, "state-wrong").await;
    let msg = oci["message"].as_str().unwrap();
    assert!(
        msg.contains("policies/fixture:live")
            && (msg.contains("401") || msg.to_lowercase().contains("unauthorized")),
        "{oci}"
    );
    assert!(!msg.contains("not-the-pw"), "no password in the status");
    assert!(oci["active_revision"].is_null(), "{oci}");
    fails_closed(&s, &c).await;
    c.cancel().await.unwrap();

    write_config(&s, "cache-good", &host, "insecure = true", &tag);
    let c = connect_cmd(launch_in(&s, "state-good", &good), TestHost::new()).await;
    decided_by_the_bundle(&s, "state-good", &c).await;
    c.cancel().await.unwrap();
    assert!(
        !s.log_text().contains("s3cret-pw"),
        "no password in the log"
    );
    assert!(
        !s.log_text().contains("not-the-pw"),
        "no password in the log"
    );

    // A credential helper on PATH (credHelpers for this registry, then
    // credsStore), given the registry on stdin.
    let bin = s.path("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-gaveltest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread reg\necho \"$reg\" >> {:?}\nif [ \"$reg\" = \"{host}\" ]; then echo '{{\"Username\":\"ops\",\"Secret\":\"s3cret-pw\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
            s.path("helper-calls").display().to_string()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, cfg) in [
        json!({"credHelpers": {host.clone(): "gaveltest"}}),
        json!({"credsStore": "gaveltest"}),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = std::fs::remove_file(s.path("helper-calls"));
        let dc = docker_dir(&s, &format!("docker-helper{i}"), &cfg);
        let state = format!("state-helper{i}");
        write_config(
            &s,
            &format!("cache-helper{i}"),
            &host,
            "insecure = true",
            &tag,
        );
        let mut cmd = launch_in(&s, &state, &dc);
        cmd.env("PATH", &path);
        let c = connect_cmd(cmd, TestHost::new()).await;
        decided_by_the_bundle(&s, &state, &c).await;
        c.cancel().await.unwrap();
        let calls = std::fs::read_to_string(s.path("helper-calls")).unwrap_or_default();
        assert!(
            calls.lines().any(|l| l == host),
            "{cfg}: the helper was asked for {host}: {calls:?}"
        );
    }
    // The helper is what makes it work: without it on PATH the pull fails,
    // naming the helper, and the server fails closed.
    let dc = docker_dir(
        &s,
        "docker-helper-missing",
        &json!({"credHelpers": {host.clone(): "gaveltest"}}),
    );
    write_config(&s, "cache-helper-missing", &host, "insecure = true", &tag);
    let c = connect_cmd(launch_in(&s, "state-helper-missing", &dc), TestHost::new()).await;
    let oci = pull_error(&s, "state-helper-missing").await;
    assert!(
        oci["message"]
            .as_str()
            .unwrap()
            .contains("docker-credential-gaveltest"),
        "{oci}"
    );
    fails_closed(&s, &c).await;
    c.cancel().await.unwrap();
}
