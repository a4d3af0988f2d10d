use super::*;

#[test]
fn allowed_hosts_are_names_with_an_optional_port() {
    let ok = vec![
        "swarm.example.com".into(),
        "10.0.0.5:50051".into(),
        "[::1]:8080".into(),
    ];
    assert_eq!(checked_hosts(ok.clone()).unwrap(), ok);
    for bad in ["http://evil.example", "host/path", "", "host:port"] {
        let err = checked_hosts(vec![bad.into()]).unwrap_err().to_string();
        assert!(err.starts_with("allowed_hosts:"), "{bad}: {err}");
    }
}

#[test]
fn keys_come_from_the_file_and_the_environment_and_guard_other_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarm.yaml");
    let hash = crate::api::auth::to_hex(&crate::api::auth::digest("file-key-0123456789"));
    std::fs::write(
        &path,
        format!(
            "listen: 0.0.0.0:6000\nallow_commands: false\n\
             api_keys:\n  - name: dash\n    role: read\n    sha256: {hash}\n"
        ),
    )
    .unwrap();
    let mut overrides = Overrides {
        config: Some(path.clone()),
        api_keys: Some("ci:operate:env-key-0123456789, ".into()),
        ..Default::default()
    };
    let config = Config::load(&overrides, None).unwrap();
    assert!(!config.allow_commands);
    assert!(!config.keys.is_empty());
    config.check_exposure(false).unwrap();

    overrides.api_keys = Some("dash:admin:other-key-0123456789".into());
    let err = Config::load(&overrides, None).unwrap_err().to_string();
    assert!(err.contains("two keys are named \"dash\""), "{err}");
    overrides.api_keys = Some("ci:root:env-key-0123456789".into());
    let err = Config::load(&overrides, None).unwrap_err().to_string();
    assert!(
        err.starts_with("SWARM_API_KEYS entry 1: role \"root\""),
        "{err}"
    );
    assert!(!err.contains("env-key"), "the key is not echoed: {err}");

    std::fs::write(&path, "listen: 0.0.0.0:6000\n").unwrap();
    overrides.api_keys = None;
    let config = Config::load(&overrides, None).unwrap();
    assert!(config.allow_commands);
    let err = config.check_exposure(false).unwrap_err().to_string();
    assert!(
        err.starts_with("listen: 0.0.0.0:6000 is not a loopback address")
            && err.contains("claude-swarm key new")
            && err.contains("SWARM_API_KEYS")
            && err.contains("--insecure"),
        "{err}"
    );
    config.check_exposure(true).unwrap();
    let loopback = Config::load(&overrides, Some("[::1]:6000".parse().unwrap())).unwrap();
    loopback.check_exposure(false).unwrap();
}

#[test]
fn file_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarm.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:6000\ninstances: 3\nmax_instances: 4\nagent: simulated\n",
    )
    .unwrap();
    let overrides = Overrides {
        config: Some(path.clone()),
        instances: Some(1),
        ..Default::default()
    };
    let config = Config::load(&overrides, None).unwrap();
    assert_eq!(config.listen.port(), 6000);
    assert_eq!(config.engine.initial_instances, 1);
    assert_eq!(config.engine.max_instances, 4);
    assert_eq!(config.agent, AgentKind::Simulated);

    std::fs::write(
        &path,
        "max_queued_tasks: 10\nallow_agent_env_override: [PATH, LD_LIBRARY_PATH]\n",
    )
    .unwrap();
    let config = Config::load(&overrides, None).unwrap();
    assert_eq!(config.engine.max_queued_tasks, 10);
    assert_eq!(
        config.engine.allow_agent_env_override,
        ["PATH", "LD_LIBRARY_PATH"]
    );
    std::fs::write(&path, "rate_limit_per_second: 5\n").unwrap();
    let limit = Config::load(&overrides, None).unwrap().rate_limit.unwrap();
    assert_eq!((limit.per_second.get(), limit.burst.get()), (5, 5));
    for (bad, key) in [
        ("rate_limit_per_second: 0\n", "rate_limit_per_second:"),
        ("rate_limit_burst: 3\n", "rate_limit_burst:"),
        (
            "rate_limit_per_second: 1\nrate_limit_burst: 0\n",
            "rate_limit_burst:",
        ),
        ("max_queued_tasks: 0\n", "max_queued_tasks:"),
        (
            "allow_agent_env_override: [RUST_LOG]\n",
            "allow_agent_env_override:",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = Config::load(&overrides, None).unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }

    std::fs::write(&path, "instances: 3\nbogus: 1\n").unwrap();
    let err = Config::load(&overrides, None).unwrap_err().to_string();
    assert!(err.contains("bogus"), "{err}");
    let overrides = Overrides {
        instances: Some(9),
        max_instances: Some(2),
        ..Default::default()
    };
    assert!(
        Config::load(&overrides, None)
            .unwrap_err()
            .to_string()
            .starts_with("instances:")
    );
}

#[test]
fn permission_rules_are_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarm.yaml");
    std::fs::write(
        &file,
        "permissions:\n  allow: [\"Bash(npm test:*)\", Read]\n  deny: [\"Bash(ls\"]\n",
    )
    .unwrap();
    let overrides = Overrides {
        config: Some(file.clone()),
        ..Overrides::default()
    };
    let err = Config::load(&overrides, None).unwrap_err();
    assert!(err.0.starts_with("permissions.deny[0]:"), "{}", err.0);
    std::fs::write(
        &file,
        "permissions:\n  allow: [\"Bash(npm test:*)\"]\n  ask: false\n  approval_timeout: 90\n",
    )
    .unwrap();
    let config = Config::load(&overrides, None).unwrap();
    assert_eq!(config.engine.permissions.allow, ["Bash(npm test:*)"]);
    assert_eq!(config.engine.permissions.ask, Some(false));
    assert_eq!(
        config.engine.approval_timeout,
        std::time::Duration::from_secs(90)
    );
}

#[test]
fn tls_is_refused_with_a_shared_store_whose_links_are_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut overrides = Overrides {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    };
    assert!(
        Config::load(&overrides, None)
            .unwrap()
            .serving
            .tls
            .is_some()
    );
    overrides.store = Some("postgres://swarm@db.internal/swarm".into());
    let err = Config::load(&overrides, None).unwrap_err().to_string();
    assert!(
        err.starts_with("tls_cert: not with a shared store"),
        "{err}"
    );
}
