//! Test images built on this machine (there is no registry): busybox from Debian's
//! busybox-static with a symlink per applet, imported as `flotilla-test/busybox:1`.

use std::path::PathBuf;
use std::process::Command;

use agent::runtime::docker::client::Docker;
use agent::runtime::docker::image::{self, Entry};

pub const BUSYBOX: &str = "flotilla-test/busybox:1";

pub fn docker() -> Docker {
    Docker::new(PathBuf::from("/var/run/docker.sock"))
}

/// Imports the busybox test image unless it is present.
pub async fn ensure_busybox() {
    let d = docker();
    if image::present(&d, BUSYBOX)
        .await
        .expect("docker answers")
        .is_some()
    {
        return;
    }
    let bin = image::static_busybox().expect("busybox-static (scripts/setup --test installs it)");
    let out = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(|a| format!("bin/{a}"))
        .collect();
    let mut entries = vec![Entry::File {
        path: "bin/busybox",
        mode: 0o755,
        data: &bin,
    }];
    for a in &applets {
        entries.push(Entry::Symlink {
            path: a,
            target: "busybox",
        });
    }
    image::import(
        &d,
        BUSYBOX,
        image::tar(&entries),
        &[r#"CMD ["/bin/sh"]"#, "ENV PATH=/bin"],
    )
    .await
    .expect("importing the busybox test image");
}

/// Removes every container the agent of `node` made.
pub fn remove_containers(node: &str) {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=flotilla.node={node}"),
        ])
        .output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

/// Removes a Docker network; the daemon may still be releasing the endpoints of
/// containers just removed, so a refusal is tried again a few times.
pub fn remove_network(name: &str) {
    for _ in 0..10 {
        match Command::new("docker")
            .args(["network", "rm", name])
            .output()
        {
            Ok(o) if o.status.success() => return,
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No such network") => return,
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// Removes what agents with `--pod-network prefix --cluster-cidr cluster_cidr` left on the
/// machine: the Docker networks `<prefix>-<podCIDR>`, the nftables table of each of those
/// podCIDRs and the two DOCKER-USER rules of the cluster CIDR (every copy).
pub fn remove_pod_network(prefix: &str, cluster_cidr: &str) {
    use agent::podnet::plan::{self, Cidr};
    let out = Command::new("docker")
        .args(["network", "ls", "--format", "{{.Name}}"])
        .output();
    let names: Vec<String> = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(String::from)
        .collect();
    for name in names {
        // `<prefix>-10.244.1.0-24`: exactly the name the agent gives a podCIDR.
        let cidr = name[prefix.len() + 1..]
            .rsplit_once('-')
            .and_then(|(a, l)| format!("{a}/{l}").parse::<Cidr>().ok())
            .filter(|c| plan::network_name(prefix, c) == name);
        let Some(cidr) = cidr else { continue };
        remove_network(&name);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &plan::nft_table(&cidr)])
            .output();
    }
    if let Ok(cluster) = cluster_cidr.parse::<Cidr>() {
        for rule in plan::docker_user_rules(&cluster) {
            for _ in 0..16 {
                let ok = Command::new("iptables")
                    .args(["-w", "5", "-D", "DOCKER-USER"])
                    .args(&rule)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    break;
                }
            }
        }
    }
}
