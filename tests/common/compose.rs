//! `deploy/compose.yaml` run by the tests: the image built from this test's `flotilla`
//! binary under a tag of its own, the compose file copied into a directory of the test's
//! (so `cluster/` with the credentials lands there), a project name, a /24 and host ports
//! of its own; everything removed when dropped (containers, volumes, network, image tag).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Compose {
    pub dir: tempfile::TempDir,
    pub project: String,
    pub image: String,
    /// The first three octets of the deployment's /24.
    pub net: String,
    pub api_port: u16,
    pub etcd_port: u16,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Compose {
    /// Builds the image (scripts/image) and prepares the directory; starts nothing.
    pub fn new(name: &str) -> Compose {
        let pid = std::process::id();
        let image = format!("flotilla-test-{name}:{pid}");
        let out = Command::new(repo().join("scripts/image"))
            .args(["--binary", super::BIN, "--tag", &image])
            .output()
            .expect("scripts/image runs");
        assert!(
            out.status.success(),
            "scripts/image failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = tempfile::tempdir().unwrap();
        for f in ["compose.yaml", "add-agent.yaml"] {
            std::fs::copy(repo().join("deploy").join(f), dir.path().join(f)).unwrap();
        }
        Compose {
            dir,
            project: format!("flotilla-test-{name}-{pid}"),
            image,
            net: format!("10.237.{}", 100 + pid % 150),
            api_port: super::free_port(),
            etcd_port: super::free_port(),
        }
    }

    /// `program` with this deployment's settings in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("FLOTILLA_IMAGE", &self.image)
            .env("FLOTILLA_NET", &self.net)
            .env("FLOTILLA_API_PORT", self.api_port.to_string())
            .env("FLOTILLA_ETCD_PORT", self.etcd_port.to_string());
        c
    }

    /// docker-compose's options naming this deployment (its project and files).
    pub fn options(&self, files: &[&str]) -> Vec<String> {
        let mut v = vec!["-p".to_string(), self.project.clone()];
        for f in files {
            v.push("-f".into());
            v.push(self.dir.path().join(f).display().to_string());
        }
        v
    }

    /// docker-compose with this deployment's settings.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(&["compose.yaml"], args)
    }

    /// docker-compose with these of the deployment's files.
    pub fn run_with(&self, files: &[&str], args: &[&str]) -> Output {
        self.command("docker-compose")
            .args(self.options(files))
            .args(args)
            .output()
            .expect("docker-compose is installed")
    }

    /// As `run`, failing the test with its output when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("cluster/admin.kubeconfig")
    }

    pub fn cluster(&self) -> &Path {
        self.dir.path()
    }

    /// The last `n` lines of every service's log.
    pub fn logs(&self, n: usize) -> String {
        let out = self.run(&["logs", "--no-color", "--tail", &n.to_string()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A service's container id.
    pub fn container(&self, service: &str) -> String {
        self.ok(&["ps", "-q", service]).trim().to_string()
    }

    /// A service's health as Docker's health check last said (or its state without one).
    pub fn health(&self, service: &str) -> String {
        let id = self.container(service);
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                &id,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The address of host `.last` of the deployment's /24.
    pub fn ip(&self, last: u8) -> String {
        format!("{}.{last}", self.net)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!("the deployment's logs:\n{}", self.logs(60));
        }
        let _ = self.run_with(
            &["compose.yaml", "add-agent.yaml"],
            &["down", "--volumes", "--timeout", "20"],
        );
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .output();
    }
}
