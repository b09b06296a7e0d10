//! The process runtime through the `Runtime` trait, with the real shim (`flotilla
//! agent-shim`): processes start, log in the CRI format, exit with their codes, stop with
//! SIGTERM then SIGKILL, and a second runtime over the same directory (an agent restarted)
//! sees exactly the same state. Containers run in cgroups with their limits.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use agent::runtime::process::ProcessRuntime;
use agent::runtime::{
    ContainerConfig, ContainerState, PodRef, PullPolicy, Runtime, RuntimeError, SandboxConfig,
    SandboxStatus, Security,
};
use common::wait_for;

fn pod() -> PodRef {
    PodRef {
        uid: "0f6e2a3c-uid".into(),
        namespace: "ns".into(),
        name: "p".into(),
    }
}

fn config(dir: &std::path::Path, name: &str, attempt: u32, script: &str) -> ContainerConfig {
    ContainerConfig {
        pod: pod(),
        name: name.into(),
        attempt,
        init: false,
        hash: 1,
        image: "busybox".into(),
        pull_policy: PullPolicy::IfNotPresent,
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("GREETING".into(), "hello".into()),
        ],
        working_dir: None,
        mounts: Vec::new(),
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        log_path: dir.join(format!("logs/{name}/{attempt}.log")),
        security: Default::default(),
    }
}

fn runtime(dir: &std::path::Path) -> ProcessRuntime {
    ProcessRuntime::new(
        &dir.join("state"),
        PathBuf::from(common::BIN),
        "127.0.0.1".into(),
    )
    .unwrap()
}

async fn state_of(rt: &ProcessRuntime, id: &str) -> ContainerState {
    let v = rt.pod(&pod().uid).await.unwrap();
    v.containers.into_iter().find(|c| c.id == id).unwrap().state
}

async fn sandbox(rt: &ProcessRuntime, dir: &std::path::Path) -> SandboxStatus {
    rt.run_sandbox(&SandboxConfig {
        pod: pod(),
        hostname: "p".into(),
        pod_dir: dir.join("pod"),
    })
    .await
    .unwrap()
}

/// Waits (20 s at most) for the container to exit; its exit code and reason.
async fn exited(rt: &ProcessRuntime, id: &str) -> (i32, String) {
    wait_for(Duration::from_secs(20), "exit recorded", || async {
        match state_of(rt, id).await {
            ContainerState::Exited {
                exit_code, reason, ..
            } => Some((exit_code, reason)),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_process_runtime_lifecycle_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let sb = sandbox(&rt, dir.path()).await;
    assert!(sb.ready);
    assert_eq!(sb.ip.as_deref(), Some("127.0.0.1"));

    // Output goes to the log in the CRI format; the exit code is recorded.
    let cfg = config(
        dir.path(),
        "once",
        0,
        "echo $GREETING; echo oops >&2; exit 7",
    );
    let id = rt.start_container(&sb, &cfg).await.unwrap();
    assert_eq!(exited(&rt, &id).await, (7, "Error".to_string()));
    let log = std::fs::read_to_string(&cfg.log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F hello")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
    let ts = lines[0].split(' ').next().unwrap();
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "RFC 3339 time: {ts}");

    // A command that does not exist is a start error, recorded as exit 128.
    let mut bad = config(dir.path(), "bad", 0, "");
    bad.command = vec!["/no/such/program".into()];
    bad.args.clear();
    let err = rt.start_container(&sb, &bad).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Start(_)), "{err}");
    assert!(err.to_string().contains("/no/such/program"), "{err}");

    // SIGTERM stops a well-behaved container at once (exit 143); one that ignores it is
    // killed when its grace runs out (137).
    let polite = rt
        .start_container(&sb, &config(dir.path(), "polite", 0, "exec sleep 600"))
        .await
        .unwrap();
    let stubborn_cfg = config(
        dir.path(),
        "stubborn",
        0,
        "trap '' TERM; echo trapped; while :; do sleep 0.1; done",
    );
    let stubborn = rt.start_container(&sb, &stubborn_cfg).await.unwrap();
    // Only once the shell ignores SIGTERM does the stop below test the grace period.
    wait_for(Duration::from_secs(10), "the stubborn shell's trap", || {
        let log = std::fs::read_to_string(&stubborn_cfg.log_path).unwrap_or_default();
        async move { log.contains("trapped").then_some(()) }
    })
    .await;
    assert!(matches!(
        state_of(&rt, &polite).await,
        ContainerState::Running { .. }
    ));
    let ok = rt
        .exec(
            &polite,
            &["sh".into(), "-c".into(), "echo $GREETING".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((ok.exit_code, ok.output.trim()), (0, "hello"));

    // An agent restarted over the same state sees the same containers.
    let rt2 = runtime(dir.path());
    assert_eq!(
        rt.pod(&pod().uid).await.unwrap(),
        rt2.pod(&pod().uid).await.unwrap()
    );
    assert_eq!(rt2.pods().await.unwrap().len(), 1);

    rt2.stop_container(&polite, Duration::from_secs(10))
        .await
        .unwrap();
    let ContainerState::Exited { exit_code, .. } = state_of(&rt2, &polite).await else {
        panic!("polite still runs")
    };
    assert_eq!(exit_code, 143);
    rt2.stop_container(&stubborn, Duration::from_millis(500))
        .await
        .unwrap();
    let ContainerState::Exited { exit_code, .. } = state_of(&rt2, &stubborn).await else {
        panic!("stubborn still runs")
    };
    assert_eq!(exit_code, 137);

    // Stopping the pod marks the sandbox down; removing it leaves nothing.
    rt2.stop_pod(&pod().uid, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!rt2.pod(&pod().uid).await.unwrap().sandbox.unwrap().ready);
    rt2.remove_pod(&pod().uid).await.unwrap();
    assert!(rt2.pods().await.unwrap().is_empty());
}

/// Where the machine has cgroups (this one does: the test asserts it), each container runs
/// in its own, with its limits, and a container over its memory limit dies OOMKilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_process_runtime_limits_cpu_and_memory_in_cgroups() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let sb = sandbox(&rt, dir.path()).await;

    // The command itself (cat here) runs in the container's cgroups with its limits.
    let mut cfg = config(
        dir.path(),
        "limited",
        0,
        "cat /proc/self/cgroup; exec sleep 30",
    );
    cfg.cpu_limit_millis = Some(250);
    cfg.memory_limit_bytes = Some(64 << 20);
    let id = rt.start_container(&sb, &cfg).await.unwrap();
    let groups = wait_for(Duration::from_secs(10), "the cgroups logged", || async {
        let log = std::fs::read_to_string(&cfg.log_path).ok()?;
        let find = |ctl: &str| {
            log.lines().find_map(|l| {
                let rest = l.split(" F ").nth(1)?;
                let mut f = rest.splitn(3, ':');
                let (_, ctls, path) = (f.next()?, f.next()?, f.next()?);
                ctls.split(',').any(|c| c == ctl).then(|| path.to_string())
            })
        };
        Some((find("memory")?, find("cpu")?))
    })
    .await;
    let (memory, cpu) = groups;
    assert!(
        memory.starts_with("/flotilla/") && memory.ends_with(&id),
        "{memory}"
    );
    let read = |p: String| std::fs::read_to_string(p).unwrap().trim().to_string();
    assert_eq!(
        read(format!(
            "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
        )),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(format!("/sys/fs/cgroup/cpu{cpu}/cpu.cfs_quota_us")),
        "25000"
    );
    assert_eq!(
        read(format!("/sys/fs/cgroup/cpu{cpu}/cpu.cfs_period_us")),
        "100000"
    );
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    rt.remove_container(&id).await.unwrap();
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory{memory}")).exists());

    // Over its memory limit, the kernel kills it: exit 137, reason OOMKilled.
    let mut hog = config(
        dir.path(),
        "hog",
        0,
        "head -c 200000000 /dev/zero | tail -n 1 > /dev/null",
    );
    hog.memory_limit_bytes = Some(32 << 20);
    let id = rt.start_container(&sb, &hog).await.unwrap();
    assert_eq!(exited(&rt, &id).await, (137, "OOMKilled".to_string()));
    rt.stop_pod(&pod().uid, Duration::from_secs(1))
        .await
        .unwrap();
    rt.remove_pod(&pod().uid).await.unwrap();
}

mod docker {
    use super::*;
    use agent::runtime::docker::DockerRuntime;
    use common::agents::http_get;
    use common::images;

    fn dconfig(name: &str, attempt: u32, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            pod: pod(),
            name: name.into(),
            attempt,
            init: false,
            hash: 1,
            image: images::BUSYBOX.into(),
            pull_policy: PullPolicy::IfNotPresent,
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            env: vec![("GREETING".into(), "hello".into())],
            working_dir: None,
            mounts: Vec::new(),
            cpu_limit_millis: Some(500),
            memory_limit_bytes: Some(64 << 20),
            log_path: PathBuf::new(),
            security: Default::default(),
        }
    }

    struct Cleanup(&'static str, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            images::remove_containers(self.0);
            images::remove_network(&self.1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn t20_docker_runtime_lifecycle_through_the_trait() {
        images::ensure_busybox().await;
        let node = "runtime-test-node";
        let prefix = format!("flotilla-rt-{}", std::process::id());
        // A podCIDR of this process's own in 10.224.0.0/12: clear of the test clusters'
        // (10.112-211.0.0/16, `control::cluster_cidr`), of Services' 10.96.0.0/12 and of
        // 10.244.0.0/16.
        let pid = std::process::id();
        let cidr: agent::podnet::plan::Cidr =
            format!("10.{}.{}.0/24", 224 + pid % 16, (pid / 16) % 256)
                .parse()
                .unwrap();
        let network = agent::podnet::plan::network_name(&prefix, &cidr);
        let _cleanup = Cleanup(node, network.clone());
        let socket = PathBuf::from("/var/run/docker.sock");
        let rt = DockerRuntime::new(socket.clone(), node, "runtime-test", &prefix)
            .await
            .unwrap();
        // No podCIDR, no sandbox.
        let e = rt
            .run_sandbox(&SandboxConfig {
                pod: pod(),
                hostname: "p".into(),
                pod_dir: PathBuf::new(),
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("network is not ready"), "{e}");
        assert!(rt.network_ready().is_err());
        rt.set_pod_cidr(cidr).await.unwrap();
        assert_eq!(rt.network_name().as_deref(), Some(network.as_str()));
        // Idempotent; the network has the podCIDR and its gateway.
        rt.set_pod_cidr(cidr).await.unwrap();
        let out = std::process::Command::new("docker")
            .args(["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{index .Options \"com.docker.network.bridge.enable_ip_masquerade\"}}", &network])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{cidr} {} false", cidr.gateway())
        );
        let sb = rt
            .run_sandbox(&SandboxConfig {
                pod: pod(),
                hostname: "p".into(),
                pod_dir: PathBuf::new(),
            })
            .await
            .unwrap();
        let ip = sb.ip.clone().expect("the pod has an address");
        assert!(sb.ready);
        assert!(cidr.contains_ip(ip.parse().unwrap()), "{ip} in {cidr}");

        // A server in one container, reached from the host at the pod IP and from a
        // second container of the pod over the shared localhost.
        let web = rt
            .start_container(
                &sb,
                &dconfig("web", 0, &["sh", "-c", "mkdir -p /www && echo $GREETING > /www/index.html && exec httpd -f -p 8080 -h /www"]),
            )
            .await
            .unwrap();
        let body = wait_for(Duration::from_secs(10), "httpd to answer", || {
            http_get(&ip, 8080)
        })
        .await;
        assert!(body.ends_with("hello\n"), "{body}");
        let side = rt
            .start_container(&sb, &dconfig("side", 0, &["sh", "-c", "exec sleep 600"]))
            .await
            .unwrap();
        let out = rt
            .exec(
                &side,
                &[
                    "wget".into(),
                    "-qO-".into(),
                    "http://127.0.0.1:8080/".into(),
                ],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!((out.exit_code, out.output.trim()), (0, "hello"));
        let out = rt
            .exec(
                &side,
                &["sh".into(), "-c".into(), "exit 4".into()],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(out.exit_code, 4);

        // Start errors and image policies fail with Kubernetes' reasons.
        let bad = rt
            .start_container(&sb, &dconfig("bad", 0, &["/no/such/program"]))
            .await
            .unwrap_err();
        assert_eq!(bad.reason(), "RunContainerError", "{bad}");
        let mut never = dconfig("never", 0, &["true"]);
        never.image = "flotilla-test/absent:1".into();
        never.pull_policy = PullPolicy::Never;
        let e = rt.start_container(&sb, &never).await.unwrap_err();
        assert_eq!(e.reason(), "ErrImageNeverPull", "{e}");
        never.pull_policy = PullPolicy::IfNotPresent;
        let e = rt.start_container(&sb, &never).await.unwrap_err();
        assert_eq!(e.reason(), "ErrImagePull", "{e}");

        // securityContext: runAsUser and a read-only root filesystem; runAsNonRoot
        // refuses an image that runs as root.
        let mut confined = dconfig("confined", 0, &["sh", "-c", "exec sleep 600"]);
        confined.security = Security {
            run_as_user: Some(1000),
            read_only_root: true,
            no_new_privileges: true,
            cap_drop: vec!["ALL".into()],
            ..Default::default()
        };
        let confined = rt.start_container(&sb, &confined).await.unwrap();
        let sh = |cmd: &str| vec!["sh".to_string(), "-c".into(), cmd.into()];
        let out = rt
            .exec(&confined, &sh("id -u"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((out.exit_code, out.output.trim()), (0, "1000"));
        let out = rt
            .exec(&confined, &sh("touch /x"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(out.exit_code, 0, "wrote the read-only root: {}", out.output);
        assert!(
            out.output.contains("Read-only file system"),
            "{}",
            out.output
        );
        let mut rooted = dconfig("rooted", 0, &["true"]);
        rooted.security.run_as_non_root = true;
        let e = rt.start_container(&sb, &rooted).await.unwrap_err();
        assert_eq!(e.reason(), "CreateContainerConfigError", "{e}");
        assert!(
            e.to_string()
                .starts_with("container has runAsNonRoot and image will run as root"),
            "{e}"
        );

        // A second runtime (an agent restarted) sees the same pod.
        let rt2 = DockerRuntime::new(socket.clone(), node, "runtime-test", &prefix)
            .await
            .unwrap();
        rt2.set_pod_cidr(cidr).await.unwrap();
        let v1 = rt.pod(&pod().uid).await.unwrap();
        let v2 = rt2.pod(&pod().uid).await.unwrap();
        let key = |v: &agent::runtime::PodView| {
            let mut c: Vec<(String, u32, bool)> = v
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.attempt, c.running()))
                .collect();
            c.sort();
            (v.sandbox.clone(), c)
        };
        assert_eq!(key(&v1), key(&v2));
        let bad_state = v2
            .containers
            .iter()
            .find(|c| c.name == "bad")
            .unwrap()
            .state
            .clone();
        assert!(
            matches!(&bad_state, ContainerState::Exited { reason, .. } if reason == "StartError"),
            "{bad_state:?}"
        );

        // PID 1 ignores SIGTERM without a handler: stop kills it when the grace runs out.
        rt2.stop_container(&side, Duration::from_secs(1))
            .await
            .unwrap();
        let v = rt2.pod(&pod().uid).await.unwrap();
        let st = &v.containers.iter().find(|c| c.id == side).unwrap().state;
        assert!(
            matches!(st, ContainerState::Exited { exit_code: 137, .. }),
            "{st:?}"
        );
        rt2.stop_pod(&pod().uid, Duration::from_secs(1))
            .await
            .unwrap();
        let v = rt2.pod(&pod().uid).await.unwrap();
        assert!(!v.sandbox.unwrap().ready);
        assert!(!v.containers.iter().any(|c| c.running() && c.id == web));
        rt2.remove_pod(&pod().uid).await.unwrap();
        assert!(rt2.pods().await.unwrap().is_empty());

        // Docker refuses a podCIDR overlapping another network's subnet, and the error
        // says so; a network of the name with another subnet is an error naming it.
        let inner: agent::podnet::plan::Cidr = format!("{}/25", cidr.addr()).parse().unwrap();
        let e = rt2.set_pod_cidr(inner).await.unwrap_err();
        assert!(
            e.contains("overlap") && e.contains(&inner.to_string()),
            "{e}"
        );
        assert_eq!(rt2.network_name().as_deref(), Some(network.as_str()));
        let squatter = agent::podnet::plan::network_name(&prefix, &inner);
        let _cleanup2 = Cleanup(node, squatter.clone());
        let out = std::process::Command::new("docker")
            .args([
                "network",
                "create",
                "--subnet",
                "10.255.254.0/24",
                &squatter,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let e = rt2.set_pod_cidr(inner).await.unwrap_err();
        assert!(
            e.contains(&squatter) && e.contains("10.255.254.0/24"),
            "{e}"
        );
    }
}
