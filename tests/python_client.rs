//! The official Python client (PyPI `kubernetes`, installed by `scripts/setup --test` into
//! a virtualenv) against real kvstore members and a real apiserver: the pytest suite in
//! `tests/python/`.

mod common;

use common::k8s::{Apiservers, Backend};

/// Where `scripts/setup --test` puts the virtualenv.
fn python() -> String {
    std::env::var("FLOTILLA_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "/opt/flotilla-venv/bin/python".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_kubernetes_python_client() {
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let out = std::process::Command::new(python())
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .env("KUBECONFIG", a.kubeconfig(0))
        .output()
        .expect("the virtualenv's python (scripts/setup --test makes it)");
    assert!(
        out.status.success(),
        "pytest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
