//! Configuration fails fast and clearly: a role started with a bad setting
//! exits at once, non-zero, with one line naming the setting — never a
//! panic, never a half-started role.

use std::process::Command;
use std::time::{Duration, Instant};

fn run(role: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentbank"));
    cmd.arg(role)
        .env("AGENTBANK_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("the binary runs");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{role} with {env:?} took {:?} to give up",
        started.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_are_named_at_start() {
    for (role, name, value) in [
        ("gateway", "AGENTBANK_SECRETS_KEY", "not-hex"),
        ("gateway", "AGENTBANK_RISK_FREE_RATE", "7"),
        ("gateway", "AGENTBANK_DEFAULT_TIER", "gold"),
        ("gateway", "AGENTBANK_JWT_KEYS", "no-colon"),
        ("gateway", "AGENTBANK_SERVICE_TOKENS", "name-only"),
        ("dispatcher", "AGENTBANK_SECRETS_KEY", "abc"),
    ] {
        let (code, stderr) = run(role, &[(name, value)]);
        assert!(
            code.is_some_and(|c| c != 0),
            "{role} with {name}={value} exited {code:?}: {stderr}"
        );
        assert!(
            stderr.contains(name),
            "{role} with {name}={value}: the error does not name the setting: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{role} with {name}={value} panicked: {stderr}"
        );
    }
}
