//! etcd's v3 auth through Debian's etcdctl 3.4 against a 3-member cluster: users, roles and
//! range permissions, what etcdctl prints for them, refusals with etcd's messages, and the
//! auth store surviving a restart and a snapshot install.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{etcdctl, etcdctl_as, etcdctl_input, etcdctl_ok, wait_for, wait_for_exit, Cluster};
use etcd_client::{Client, ConnectOptions};
use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::{AuthStatusRequest, AuthStatusResponse};

const ROOT: &str = "root:rootpw";

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// stdout of a successful etcdctl run as `user`.
fn as_ok(ep: &[String], user: &str, args: &[&str]) -> String {
    let out = etcdctl_as(ep, user, args);
    assert!(
        out.status.success(),
        "etcdctl --user {user} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a failed etcdctl run as `user` (`None`: no credentials).
fn refused(ep: &[String], user: Option<&str>, args: &[&str]) -> String {
    let out = match user {
        Some(u) => etcdctl_as(ep, u, args),
        None => etcdctl(ep, args),
    };
    assert!(
        !out.status.success(),
        "etcdctl --user {user:?} {args:?} should fail but printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `etcdctl watch` prints before it exits on its own (the server cancels the watch).
fn watch_output(ep: &[String], user: &str, key: &str) -> String {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", ep.join(",")))
        .args([&format!("--user={user}"), "watch", key])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl");
    wait_for_exit(&mut child, Duration::from_secs(10));
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

async fn root_client(endpoint: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_user("root", "rootpw")
        .with_timeout(Duration::from_secs(10));
    wait_for(Duration::from_secs(15), "a root client", || async {
        Client::connect([endpoint], Some(opts.clone())).await.ok()
    })
    .await
}

const ROLE_APP: &str = "Role app\nKV Read:\n\t[app/, app0) (prefix app/)\n\tk1\nKV Write:\n\t[app/, app0) (prefix app/)\n\t[z, <open ended>\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_users_roles_and_range_permissions_through_etcdctl() {
    let mut c = Cluster::start(3, &["--snapshot-count", "30"]).await;
    let ep = c.endpoints();

    // Set up while auth is off: no credentials needed.
    assert_eq!(
        etcdctl_ok(&ep, &["user", "add", ROOT]).trim(),
        "User root created"
    );
    assert_eq!(
        etcdctl_ok(&ep, &["role", "add", "app"]).trim(),
        "Role app created"
    );
    for perm in [
        &["readwrite", "app/", "--prefix"][..],
        &["read", "k1"],
        &["write", "z", "--from-key"],
    ] {
        let args: Vec<&str> = ["role", "grant-permission", "app"]
            .iter()
            .chain(perm)
            .copied()
            .collect();
        assert_eq!(etcdctl_ok(&ep, &args).trim(), "Role app updated");
    }
    assert_eq!(
        etcdctl_ok(&ep, &["user", "add", "alice:pw"]).trim(),
        "User alice created"
    );
    assert_eq!(
        etcdctl_ok(&ep, &["user", "grant-role", "alice", "app"]).trim(),
        "Role app is granted to user alice"
    );
    etcdctl_ok(&ep, &["put", "other", "secret"]);
    // etcdctl adds the root role and grants it to root when AuthEnable asks for it.
    assert_eq!(
        etcdctl_ok(&ep, &["auth", "enable"]).trim(),
        "Authentication Enabled"
    );

    // AuthStatus (etcd 3.5's call; etcdctl 3.4 has no `auth status`) needs no credentials.
    let status = auth_status(&c).await;
    assert!(status.enabled);
    // root, app, 3 grants, alice, her role, then etcdctl's root role and grant, enable.
    assert_eq!(status.auth_revision, 11);

    // alice: her prefix, nothing else.
    assert_eq!(as_ok(&ep, "alice:pw", &["put", "app/x", "1"]).trim(), "OK");
    assert_eq!(
        lines(&as_ok(&ep, "alice:pw", &["get", "app/x"])),
        ["app/x", "1"]
    );
    assert_eq!(
        lines(&as_ok(
            &ep,
            "alice:pw",
            &["get", "app/", "--prefix", "--keys-only"]
        )),
        ["app/x"]
    );
    for args in [
        &["get", "other"][..],
        &["put", "other", "x"],
        &["get", "app/", "--from-key"],
        // k1 is granted READ only.
        &["put", "k1", "x"],
    ] {
        let err = refused(&ep, Some("alice:pw"), args);
        assert!(
            err.contains("etcdserver: permission denied"),
            "{args:?}: {err}"
        );
    }
    let err = refused(&ep, Some("alice:wrong"), &["get", "app/x"]);
    assert!(
        err.contains("etcdserver: authentication failed, invalid user ID or password"),
        "{err}"
    );
    let err = refused(&ep, Some("mallory:pw"), &["get", "app/x"]);
    assert!(err.contains("authentication failed"), "{err}");
    let err = refused(&ep, None, &["get", "app/x"]);
    assert!(err.contains("etcdserver: user name is empty"), "{err}");
    let err = refused(&ep, Some("alice:pw"), &["user", "list"]);
    assert!(err.contains("etcdserver: permission denied"), "{err}");
    // A user reads itself and its own roles.
    assert_eq!(
        lines(&as_ok(&ep, "alice:pw", &["user", "get", "alice"])),
        ["User: alice", "Roles: app"]
    );
    assert_eq!(as_ok(&ep, "alice:pw", &["role", "get", "app"]), ROLE_APP);
    let watch = watch_output(&ep, "alice:pw", "other");
    assert!(watch.contains("etcdserver: permission denied"), "{watch}");

    // root: everything, and the listings as etcdctl 3.4 prints them.
    assert_eq!(
        lines(&as_ok(&ep, ROOT, &["get", "other"])),
        ["other", "secret"]
    );
    assert_eq!(
        lines(&as_ok(&ep, ROOT, &["user", "list"])),
        ["alice", "root"]
    );
    assert_eq!(lines(&as_ok(&ep, ROOT, &["role", "list"])), ["app", "root"]);
    assert_eq!(as_ok(&ep, ROOT, &["role", "get", "app"]), ROLE_APP);
    assert_eq!(
        lines(&as_ok(&ep, ROOT, &["user", "get", "root"])),
        ["User: root", "Roles: root"]
    );
    let err = refused(&ep, Some(ROOT), &["user", "revoke-role", "root", "root"]);
    assert!(err.contains("etcdserver: invalid auth management"), "{err}");
    let err = refused(&ep, Some(ROOT), &["user", "add", "alice:again"]);
    assert!(
        err.contains("etcdserver: user name already exists"),
        "{err}"
    );
    let err = refused(&ep, Some(ROOT), &["role", "get", "nope"]);
    assert!(err.contains("etcdserver: role name not found"), "{err}");

    // A new password: the old one stops working.
    let out = etcdctl_input(
        &ep,
        &[
            "--user=root:rootpw",
            "user",
            "passwd",
            "alice",
            "--interactive=false",
        ],
        "pw2\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Password updated"
    );
    let err = refused(&ep, Some("alice:pw"), &["get", "app/x"]);
    assert!(err.contains("authentication failed"), "{err}");
    assert_eq!(
        lines(&as_ok(&ep, "alice:pw2", &["get", "app/x"])),
        ["app/x", "1"]
    );

    // A restarted member still knows every user and role.
    c.terminate(0);
    c.spawn(0, "new");
    let first = vec![c.members[0].endpoint()];
    wait_for(
        Duration::from_secs(20),
        "the restarted member to serve alice",
        || async {
            let out = etcdctl_as(&first, "alice:pw2", &["get", "app/x", "--print-value-only"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1")
                .then_some(())
        },
    )
    .await;
    assert_eq!(as_ok(&first, ROOT, &["role", "get", "app"]), ROLE_APP);

    // A member that catches up through a snapshot gets the auth store with it.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = (leader + 1) % 3;
    let victim_id = {
        let mut m = c.client(victim).await;
        m.status().await.unwrap().header().unwrap().member_id()
    };
    c.kill(victim);
    let mut root = root_client(&c.members[leader].endpoint()).await;
    root.member_remove(victim_id).await.unwrap();
    std::fs::remove_dir_all(&c.members[victim].data_dir).unwrap();
    for i in 0..100 {
        root.put(format!("app/bulk/{i:03}"), "x", None)
            .await
            .unwrap();
    }
    root.member_add([c.members[victim].peer_url()], None)
        .await
        .unwrap();
    c.spawn(victim, "existing");
    let replacement = vec![c.members[victim].endpoint()];
    wait_for(
        Duration::from_secs(30),
        "the replacement to serve alice",
        || async {
            let out = etcdctl_as(
                &replacement,
                "alice:pw2",
                &[
                    "get",
                    "app/bulk/099",
                    "--print-value-only",
                    "--consistency=s",
                ],
            );
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "x")
                .then_some(())
        },
    )
    .await;
    let log = std::fs::read_to_string(&c.members[victim].log).unwrap();
    assert!(
        log.contains("snapshot installed"),
        "caught up through a snapshot:\n{log}"
    );
    assert_eq!(as_ok(&replacement, ROOT, &["role", "get", "app"]), ROLE_APP);
    let err = refused(&replacement, Some("alice:pw2"), &["get", "other"]);
    assert!(err.contains("etcdserver: permission denied"), "{err}");

    // Disabling auth opens everything again.
    let ep = c.endpoints();
    assert_eq!(
        as_ok(&ep, ROOT, &["auth", "disable"]).trim(),
        "Authentication Disabled"
    );
    assert_eq!(
        lines(&etcdctl_ok(&ep, &["get", "other"])),
        ["other", "secret"]
    );
    assert_eq!(
        lines(&etcdctl_ok(&ep, &["user", "list"])),
        ["alice", "root"]
    );
    assert!(!auth_status(&c).await.enabled);
}

async fn auth_status(c: &Cluster) -> AuthStatusResponse {
    let url = c.members[0].client_url();
    let mut auth = AuthClient::connect(url).await.expect("connect");
    auth.auth_status(AuthStatusRequest {})
        .await
        .expect("auth status")
        .into_inner()
}
