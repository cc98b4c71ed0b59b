use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/gavel/servers.toml"), &|k| match k {
        "TOKEN" => Some("s3cret".into()),
        "HMAC_32" => Some("0123456789abcdef0123456789abcdef".into()),
        "USER" => Some("ada".into()),
        _ => None,
    })
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_stdio_server_gets_defaults() {
    let c = parse("[servers.fs]\ncommand = \"mcp-fs\"\nargs = [\"/tmp\"]\n").unwrap();
    let s = &c.servers["fs"];
    assert!(s.enabled);
    assert_eq!(s.prefix, "fs");
    assert_eq!(s.startup_timeout, Duration::from_secs(30));
    assert_eq!(s.call_timeout, Duration::from_secs(300));
    assert_eq!(c.limits.max_message_bytes, 16 * 1024 * 1024);
    assert_eq!(c.identity.user.id, "unknown-user");
    assert!(matches!(&s.transport, UpstreamTransport::Stdio { args, .. } if args == &["/tmp"]));
}

#[test]
fn unknown_keys_are_errors_with_line_numbers_at_every_level() {
    let e = err("[servers.fs]\ncommand = \"x\"\nstartup_timout = \"5s\"\n");
    assert!(e.starts_with("/etc/gavel/servers.toml:3:"), "{e}");
    assert!(e.contains("startup_timout"), "{e}");
    let e = err("[servers.fs]\ncommand = \"x\"\n[servers.fs.tools]\ndeny_list = []\n");
    assert!(e.contains(":4:") && e.contains("deny_list"), "{e}");
    let e = err("[servers.fs]\ncommand = \"x\"\n[identity.user]\nroles = []\n");
    assert!(e.contains(":4:") && e.contains("roles"), "{e}");
    let e = err("[servers.fs]\ncommand = \"x\"\n[polcy]\nrequire_bundle = true\n");
    assert!(e.contains("polcy"), "{e}");
}

#[test]
fn durations_and_sizes_need_units_and_name_the_field() {
    let e = err("[servers.fs]\ncommand = \"x\"\ncall_timeout = \"5 parsecs\"\n");
    assert!(
        e.contains(":3:") && e.contains("servers.fs.call_timeout") && e.contains("\"30s\""),
        "{e}"
    );
    let e = err("[servers.fs]\ncommand = \"x\"\ncall_timeout = \"0s\"\n");
    assert!(e.contains("greater than zero"), "{e}");
    let c =
        parse("[limits]\nmax_message_bytes = \"2MiB\"\n[servers.fs]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.limits.max_message_bytes, 2 * 1024 * 1024);
    let e = err("[limits]\nmax_message_bytes = 10\n[servers.fs]\ncommand = \"x\"\n");
    assert!(
        e.contains("limits.max_message_bytes") && e.contains(":2:"),
        "{e}"
    );
}

#[test]
fn transport_shape_is_validated() {
    assert!(err("[servers.a]\ncommand = \"x\"\nurl = \"http://h/mcp\"\n").contains("not both"));
    assert!(err("[servers.a]\nenabled = true\n").contains("missing command"));
    assert!(err("[servers.a]\nurl = \"ftp://h\"\n").contains("http://"));
    assert!(
        err("[servers.a]\nurl = \"http://h/mcp\"\nargs = [\"x\"]\n")
            .contains("command servers only")
    );
    assert!(
        err("[servers.a]\ncommand = \"x\"\nheaders = { A = \"b\" }\n").contains("url servers only")
    );
    let c = parse(
        "[servers.a]\nurl = \"https://h/mcp\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }\n",
    )
    .unwrap();
    assert!(
        matches!(&c.servers["a"].transport, UpstreamTransport::Http { headers, .. } if headers["Authorization"] == "Bearer s3cret")
    );
}

#[test]
fn names_and_prefixes() {
    assert!(err("[servers.\"a__b\"]\ncommand = \"x\"\n").contains("invalid server name"));
    assert!(err("[servers.a]\ncommand = \"x\"\nprefix = \"p q\"\n").contains("prefix"));
    let e = err(
        "[servers.a]\ncommand = \"x\"\nprefix = \"p\"\n[servers.b]\ncommand = \"y\"\nprefix = \"p\"\n",
    );
    assert!(e.contains("already used"), "{e}");
    // A disabled server does not count for prefixes or naming.
    let c = parse("[servers.a]\ncommand = \"x\"\n[servers.b]\ncommand = \"y\"\nenabled = false\n")
        .unwrap();
    assert_eq!(c.enabled_servers().count(), 1);
    assert!(err("[servers.a]\ncommand = \"x\"\nenabled = false\n").contains("enable at least one"));
    assert!(err("").contains("no servers"));
}

#[test]
fn env_expansion_in_documented_fields_only() {
    let c = parse(
        "[identity.user]\nid = \"${USER}\"\ngroups = [\"${GROUP:-eng}\"]\n[servers.a]\ncommand = \"x\"\nenv = { T = \"${TOKEN}\" }\n",
    )
    .unwrap();
    assert_eq!(c.identity.user.id, "ada");
    assert_eq!(c.identity.user.groups, vec!["eng"]);
    let e = err("[servers.a]\ncommand = \"x\"\nenv = { T = \"${MISSING_VAR}\" }\n");
    assert!(
        e.contains("MISSING_VAR") && e.contains("servers.a.env.T") && e.contains(":3:"),
        "{e}"
    );
}

#[test]
fn bundles_resolve_and_are_exclusive() {
    let c = parse(
        "[keys.k]\nkey = \"0123456789abcdef0123456789abcdef\"\nalgorithm = \"HS256\"\n[servers.a]\ncommand = \"x\"\nbundles = [\"b1\", \"oci://R:5000/p:1\"]\nkeys = [\"k\"]\n",
    )
    .unwrap();
    assert_eq!(
        c.servers["a"].bundles,
        vec!["/etc/gavel/b1", "oci://r:5000/p:1"],
        "OCI references are normalized"
    );
    assert!(c.servers["a"].signing.require_signature);
    assert!(
        err("[servers.a]\ncommand = \"x\"\nbundle = \"a\"\nbundles = [\"b\"]\n")
            .contains("not both")
    );
}

#[test]
fn invalid_glob_is_an_error() {
    let e = err("[servers.a]\ncommand = \"x\"\n[servers.a.tools]\ndeny = [\"[\"]\n");
    assert!(
        e.contains("servers.a.tools.deny") && e.contains("invalid glob"),
        "{e}"
    );
}

#[test]
fn masked_rendering_hides_secrets_after_expansion() {
    let c = parse(
        "[servers.api]\nurl = \"https://u:pw@h.test/mcp?api_key=k1&x=1\"\nheaders = { Authorization = \"Bearer ${TOKEN}\", X-Trace = \"t\" }\n[servers.loc]\ncommand = \"x\"\nenv = { GITHUB_TOKEN = \"${TOKEN}\", REGION = \"eu\" }\n",
    )
    .unwrap();
    let out = c.render_masked();
    assert!(
        !out.contains("s3cret") && !out.contains(":pw@") && !out.contains("k1"),
        "{out}"
    );
    assert!(
        out.contains("Bearer ***") && out.contains("eu") && out.contains("x=1"),
        "{out}"
    );
    // The rendering is itself a valid TOML document.
    toml::from_str::<toml::Table>(&out).unwrap();
}

#[test]
fn parse_size_units() {
    assert_eq!(parse_size("16MiB"), Some(16 << 20));
    assert_eq!(parse_size("512 KiB"), Some(512 << 10));
    assert_eq!(parse_size("1MB"), Some(1_000_000));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("12 parsecs"), None);
}

#[test]
fn signing_keys_are_validated() {
    let e =
        err("[keys.a]\nalgorithm = \"HS256\"\nkey_env = \"NOPE\"\n[servers.s]\ncommand = \"x\"\n");
    assert!(e.contains("keys.a.key_env") && e.contains("NOPE"), "{e}");
    let e = err("[keys.a]\nalgorithm = \"XX1\"\nkey = \"k\"\n[servers.s]\ncommand = \"x\"\n");
    assert!(e.contains("unknown algorithm"), "{e}");
    let e = err("[keys.a]\nkey = \"k\"\nkey_env = \"TOKEN\"\n[servers.s]\ncommand = \"x\"\n");
    assert!(e.contains("exactly one of"), "{e}");
    let e = err("[servers.s]\ncommand = \"x\"\nkeys = [\"missing\"]\n");
    assert!(e.contains("servers.s.keys") && e.contains("missing"), "{e}");
    let c = parse("[keys.a]\nalgorithm = \"HS256\"\nkey_env = \"HMAC_32\"\n[servers.s]\ncommand = \"x\"\nkeys = [\"a\"]\n").unwrap();
    assert_eq!(c.keys["a"].material, "0123456789abcdef0123456789abcdef");
    assert!(
        c.servers["s"].signing.require_signature,
        "keys listed → signatures required by default"
    );
}

#[test]
fn stateful_sections_parse_refuse_and_render_masked() {
    let c = parse(
        "[budget]\nper = \"agent\"\nperiod = \"week\"\ntokens = 100\n\n[state]\nbackend = \"redis\"\nredis_url = \"redis://:${TOKEN}@127.0.0.1:6379/0\"\n\n[auth]\nissuer = \"https://idp\"\naudience = \"http://g/mcp\"\njwks_file = \"keys.json\"\n\n[policy]\napproval_timeout = \"30s\"\n\n[servers.a]\ncommand = \"x\"\n[[servers.a.limits]]\nscope = \"user\"\nrate = 5\nper = \"1m\"\n",
    )
    .unwrap();
    let b = c.budget.as_ref().unwrap();
    assert_eq!(
        (b.per, b.calls, b.tokens),
        (BudgetPer::Agent, None, Some(100))
    );
    assert_eq!(b.calendar, Default::default(), "UTC, ISO weeks by default");
    let local = parse(
        "[budget]\nperiod = \"week\"\nutc_offset = \"-08:00\"\nweek_starts = \"sunday\"\ncalls = 5\n\n[servers.a]\ncommand = \"x\"\n",
    )
    .unwrap();
    let cal = local.budget.as_ref().unwrap().calendar;
    assert_eq!((cal.utc_offset_s, cal.week_start), (-8 * 3600, 6));
    let shown = local.render_masked();
    assert!(
        shown.contains("utc_offset = \"-08:00\"") && shown.contains("week_starts = \"sunday\""),
        "{shown}"
    );
    assert_eq!(
        c.redis_url.as_deref(),
        Some("redis://:s3cret@127.0.0.1:6379/0")
    );
    let a = c.auth.as_ref().unwrap();
    assert_eq!(a.key, AuthKey::JwksFile("/etc/gavel/keys.json".into()));
    assert_eq!(a.algorithm, "RS256");
    assert_eq!(c.policy.approval_timeout, Duration::from_secs(30));
    assert_eq!(c.servers["a"].limits.len(), 1);
    let out = c.render_masked();
    assert!(!out.contains("s3cret"), "{out}");
    assert!(
        out.contains("jwks_file") && out.contains("[budget]"),
        "{out}"
    );

    for (bad, says) in [
        ("[budget]\nper = \"team\"\ncalls = 1\n", "budget.per"),
        ("[budget]\nperiod = \"month\"\ncalls = 1\n", "budget.period"),
        (
            "[budget]\nutc_offset = \"+15:00\"\ncalls = 1\n",
            "budget.utc_offset",
        ),
        (
            "[budget]\nutc_offset = \"5\"\ncalls = 1\n",
            "budget.utc_offset",
        ),
        (
            "[budget]\nweek_starts = \"Sunday\"\ncalls = 1\n",
            "budget.week_starts",
        ),
        ("[budget]\nper = \"user\"\n", "set calls and/or tokens"),
        ("[state]\nbackend = \"redis\"\n", "needs redis_url"),
        ("[state]\nbackend = \"etcd\"\n", "state.backend"),
        (
            "[auth]\nissuer = \"i\"\naudience = \"a\"\n",
            "exactly one of key_file",
        ),
        (
            "[auth]\nissuer = \"i\"\naudience = \"gavel\"\nkey_env = \"K\"\nalgorithm = \"HS256\"\n",
            "auth.audience",
        ),
        ("[metrics]\nlisten = \"nowhere\"\n", "host:port"),
        (
            "[servers.a]\ncommand = \"x\"\n[[servers.a.limits]]\nscope = \"team\"\nrate = 1\nper = \"1s\"\n",
            "unknown scope",
        ),
    ] {
        let e = if bad.contains("[servers.a]") {
            err(bad)
        } else {
            err(&format!("{bad}\n[servers.z]\ncommand = \"x\"\n"))
        };
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn oci_bundles_must_be_signed_unless_said_otherwise() {
    let e = err("[servers.a]\ncommand = \"x\"\nbundle = \"oci://r:5000/p:1\"\n");
    assert!(
        e.contains("servers.a.keys") && e.contains("must be signed"),
        "{e}"
    );
    let c = parse(
        "[servers.a]\ncommand = \"x\"\nbundle = \"oci://r:5000/p:1\"\nrequire_signature = false\n",
    )
    .unwrap();
    assert!(!c.servers["a"].signing.require_signature);
    let e = err("[policy]\nshared_bundles = [\"oci://r/p:1\"]\n[servers.a]\ncommand = \"x\"\n");
    assert!(
        e.contains("shared bundle") && e.contains("must be signed"),
        "{e}"
    );
    let e = err(
        "[servers.a]\ncommand = \"x\"\nbundle = \"oci://r:5000/p\"\nrequire_signature = false\n",
    );
    assert!(
        e.contains("servers.a.bundle") && e.contains("pin a tag"),
        "{e}"
    );
}

#[test]
fn oci_settings_parse_and_check() {
    let c = parse(
        "[oci]\ncache_dir = \"cache\"\nmin_delay = \"5s\"\nmax_delay = \"10s\"\nmax_bundle_bytes = \"2MiB\"\n[oci.registries.\"127.0.0.1:5000\"]\ninsecure = true\nusername = \"ops\"\npassword_env = \"REG_PW\"\n[servers.a]\ncommand = \"x\"\n",
    )
    .unwrap();
    assert_eq!(
        c.oci.cache_dir.as_deref(),
        Some(std::path::Path::new("/etc/gavel/cache"))
    );
    assert_eq!(c.oci.min_delay, Duration::from_secs(5));
    assert_eq!(c.oci.max_bundle_bytes, 2 << 20);
    let r = &c.oci.registries["127.0.0.1:5000"];
    assert!(r.insecure);
    assert_eq!(r.password_env.as_deref(), Some("REG_PW"));
    let e = err("[oci]\nmin_delay = \"10s\"\nmax_delay = \"5s\"\n[servers.a]\ncommand = \"x\"\n");
    assert!(e.contains("oci.max_delay") && e.contains("at least"), "{e}");
    let e = err("[oci.registries.\"https://r\"]\ninsecure = true\n[servers.a]\ncommand = \"x\"\n");
    assert!(e.contains("no scheme"), "{e}");
    let e = err("[oci.registries.r]\nusername = \"u\"\n[servers.a]\ncommand = \"x\"\n");
    assert!(e.contains("password_env"), "{e}");
    let e = err("[oci]\npoll = \"1s\"\n[servers.a]\ncommand = \"x\"\n");
    assert!(e.contains("poll"), "{e}");
}

#[test]
fn exclude_files_patterns_are_checked_at_load() {
    let keys = "[keys.k]\nalgorithm = \"HS256\"\nkey = \"0123456789abcdef0123456789abcdef\"\n";
    let c = parse(&format!(
        "{keys}[servers.a]\ncommand = \"x\"\nkeys = [\"k\"]\nexclude_files = [\"*.md\", \"docs/[a-z]*\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.servers["a"].signing.exclude_files,
        ["*.md", "docs/[a-z]*"]
    );
    let e = err(&format!(
        "{keys}[servers.a]\ncommand = \"x\"\nkeys = [\"k\"]\nexclude_files = [\"docs/[a-z\"]\n"
    ));
    assert!(
        e.contains("servers.a.exclude_files")
            && e.contains("docs/[a-z")
            && e.contains("filepath.Match"),
        "{e}"
    );
}

#[test]
fn a_server_that_trusts_keys_never_accepts_unsigned_bundles() {
    let keys = "[keys.k]\nalgorithm = \"HS256\"\nkey = \"0123456789abcdef0123456789abcdef\"\n";
    let e = err(&format!(
        "{keys}[servers.a]\ncommand = \"x\"\nbundle = \"b\"\nkeys = [\"k\"]\nrequire_signature = false\n"
    ));
    assert!(
        e.contains("servers.a.require_signature") && e.contains("unsigned"),
        "{e}"
    );
    // Without keys, an explicit opt-out stays possible.
    let c = parse(
        "[servers.a]\ncommand = \"x\"\nbundle = \"oci://r:5000/p:1\"\nrequire_signature = false\n",
    )
    .unwrap();
    assert!(!c.servers["a"].signing.require_signature);
}

#[test]
fn policy_keys_sign_the_shared_bundles() {
    let keys = "[keys.org]\nalgorithm = \"HS256\"\nkey = \"0123456789abcdef0123456789abcdef\"\n";
    // With [policy] keys a registry shared bundle needs no per-server keys.
    let c = parse(&format!(
        "{keys}[policy]\nkeys = [\"org\"]\nshared_bundles = [\"oci://r:5000/org:1\"]\n[servers.a]\ncommand = \"x\"\n"
    ))
    .unwrap();
    assert_eq!(c.policy.keys, ["org"]);
    assert!(c.render_masked().contains("keys = [\"org\"]"));
    let e = err(&format!(
        "{keys}[policy]\nkeys = [\"nope\"]\n[servers.a]\ncommand = \"x\"\n"
    ));
    assert!(
        e.contains("policy.keys") && e.contains("[keys.nope]"),
        "{e}"
    );
    let e = err(&format!(
        "{keys}[policy]\nkeys = []\n[servers.a]\ncommand = \"x\"\n"
    ));
    assert!(
        e.contains("policy.keys") && e.contains("trusts no key"),
        "{e}"
    );
}

#[test]
fn fail_open_is_refused_where_verification_could_fail() {
    let keys = "[keys.k]\nalgorithm = \"HS256\"\nkey = \"0123456789abcdef0123456789abcdef\"\n";
    for (case, text) in [
        (
            "keys",
            format!("{keys}[servers.a]\ncommand = \"x\"\nbundle = \"b\"\nkeys = [\"k\"]\nfail_open = true\n"),
        ),
        (
            "registry",
            "[servers.a]\ncommand = \"x\"\nbundle = \"oci://r:5000/p:1\"\nrequire_signature = false\nfail_open = true\n".to_string(),
        ),
        (
            "shared registry",
            "[policy]\nshared_bundles = [\"oci://r:5000/p:1\"]\n[servers.a]\ncommand = \"x\"\nrequire_signature = false\nfail_open = true\n".to_string(),
        ),
        (
            "policy keys",
            format!("{keys}[policy]\nkeys = [\"k\"]\nshared_bundles = [\"org\"]\n[servers.a]\ncommand = \"x\"\nfail_open = true\n"),
        ),
    ] {
        let e = err(&text);
        assert!(
            e.contains("servers.a.fail_open") && e.contains("cannot be combined with verified bundles"),
            "{case}: {e}"
        );
    }
    // Local unsigned bundles: fail_open stays available (and explicit).
    let c = parse("[servers.a]\ncommand = \"x\"\nbundle = \"b\"\nfail_open = true\n").unwrap();
    assert!(c.servers["a"].fail_open);
}

#[test]
fn log_on_write_error_defaults_to_deny_and_names_the_choices() {
    let c = parse("[servers.fs]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.log.on_write_error, OnWriteError::Deny);
    let c = parse("[log]\non_write_error = \"allow\"\n[servers.fs]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.log.on_write_error, OnWriteError::Allow);
    let e = err("[log]\non_write_error = \"ignore\"\n[servers.fs]\ncommand = \"x\"\n");
    assert!(
        e.contains(":2:") && e.contains("log.on_write_error") && e.contains("\"deny\""),
        "{e}"
    );
}

#[test]
fn log_rotation_is_configurable_and_bounded() {
    let c = parse("[servers.fs]\ncommand = \"x\"\n").unwrap();
    assert_eq!(
        c.log.rotation,
        crate::audit::Rotation {
            bytes: 256 << 20,
            keep: 1
        }
    );
    let c =
        parse("[log]\nrotate_bytes = \"16MiB\"\nrotate_keep = 5\n[servers.fs]\ncommand = \"x\"\n")
            .unwrap();
    assert_eq!((c.log.rotation.bytes, c.log.rotation.keep), (16 << 20, 5));
    let c = parse("[log]\nrotate_bytes = 0\n[servers.fs]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.log.rotation.bytes, 0, "0: never rotate");
    let e = err("[log]\nrotate_bytes = 100\n[servers.fs]\ncommand = \"x\"\n");
    assert!(
        e.contains(":2:") && e.contains("log.rotate_bytes") && e.contains("4KiB"),
        "{e}"
    );
    let e = err("[log]\nrotate_keep = 0\n[servers.fs]\ncommand = \"x\"\n");
    assert!(e.contains(":2:") && e.contains("log.rotate_keep"), "{e}");
}

#[test]
fn jwks_urls_are_checked_on_their_parsed_host() {
    use super::auth::key_url_allowed;
    for ok in [
        "https://idp.example/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
        "http://127.0.0.2/jwks",
    ] {
        assert!(key_url_allowed(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://127.0.0.1@evil.example/jwks",
        "http://localhost.evil.example/jwks",
        "http://127.0.0.1.evil.example/jwks",
        "http://idp.example/jwks",
        "ftp://idp.example/jwks",
        "not a url",
    ] {
        assert!(key_url_allowed(bad).is_err(), "{bad}");
    }
    let e = err(
        "[auth]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"http://127.0.0.1@evil.example/k\"\n\n[servers.a]\ncommand = \"x\"\n",
    );
    assert!(
        e.contains("auth.jwks_url") && e.contains("evil.example"),
        "{e}"
    );
}

/// RFC 7518 §3.2: an HMAC secret at least as long as its hash, whatever
/// the source (inline, file, environment) and for `[auth]` too; the error
/// names the field.
#[test]
fn hmac_secrets_shorter_than_their_hash_are_refused_from_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, len: usize| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{}\n", "k".repeat(len))).unwrap();
        p.display().to_string()
    };
    let server = "[servers.s]\ncommand = \"x\"\nkeys = [\"a\"]\n";
    let key =
        |alg: &str, source: String| format!("[keys.a]\nalgorithm = \"{alg}\"\n{source}\n{server}");
    for (alg, min) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
        for (len, field) in [(0, "key"), (min - 1, "key")] {
            let e = err(&key(alg, format!("key = {:?}", "k".repeat(len))));
            assert!(
                e.contains(&format!("keys.a.{field}"))
                    && e.contains(&format!("at least {min}"))
                    && e.contains(&format!("{len} bytes")),
                "{alg} {len}: {e}"
            );
        }
        let short = file(&format!("{alg}.short"), min - 1);
        let e = err(&key(alg, format!("key_file = {short:?}")));
        assert!(
            e.contains("keys.a.key_file") && e.contains(&format!("at least {min}")),
            "{e}"
        );
        // The trailing newline of a key file is not part of the secret.
        let exact = file(&format!("{alg}.exact"), min);
        let c = parse(&key(alg, format!("key_file = {exact:?}"))).unwrap();
        assert_eq!(c.keys["a"].material.len(), min);
        parse(&key(alg, format!("key = {:?}", "k".repeat(min)))).unwrap();
    }
    let e = err(&key("HS256", "key_env = \"TOKEN\"".into()));
    assert!(e.contains("keys.a.key_env") && e.contains("6 bytes"), "{e}");
    parse(&key("HS256", "key_env = \"HMAC_32\"".into())).unwrap();
    // Public-key algorithms are not HMAC secrets: not measured here.
    parse(&key("RS256", "key = \"pem\"".into())).unwrap();
    // [auth]: the HMAC secret in the environment.
    let auth = |var: &str, alg: &str| {
        format!(
            "[auth]\nissuer = \"https://idp\"\naudience = \"https://g.test/mcp\"\nalgorithm = \"{alg}\"\nkey_env = \"{var}\"\n[servers.z]\ncommand = \"x\"\n"
        )
    };
    let e = err(&auth("TOKEN", "HS256"));
    assert!(
        e.contains("auth.key_env") && e.contains("TOKEN") && e.contains("at least 32"),
        "{e}"
    );
    let e = err(&auth("HMAC_32", "HS384"));
    assert!(
        e.contains("auth.key_env") && e.contains("at least 48"),
        "{e}"
    );
    parse(&auth("HMAC_32", "HS256")).unwrap();
    // Set only later (gavel serve's environment): the authenticator checks it.
    parse(&auth("UNSET", "HS256")).unwrap();
}
