//! `kubectl exec` and `kubectl port-forward` against a pod of the docker runtime, through
//! the apiserver's pods/exec and pods/portforward and the pod's agent (WebSocket, and
//! SPDY tunnelled in it for port-forward, as kubectl 1.32 speaks them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::k8s::{http_get_over, kubectl, kubectl_ok, kubectl_stdin, PortForward};
use super::common::wait_for;
use super::{apply, ready_pods, World};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub async fn check(w: &World) {
    let kc = w.api.kubeconfig(0).to_path_buf();
    apply(
        w,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: shell, namespace: default, labels: {{app: shell}}}}
spec:
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo hi-from-loopback > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
"#,
            image = super::common::images::BUSYBOX
        ),
    );
    ready_pods(&w.client, "app=shell", 1, Duration::from_secs(60)).await;
    exec(&kc);
    exec_is_authorized(&kc);
    port_forward(&kc).await;
    kubectl_ok(&kc, &["delete", "pod", "shell", "--wait=false"]);
}

fn exec(kc: &Path) {
    // Both outputs, and the command's exit code as kubectl's.
    let out = kubectl(
        kc,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    let err = text(&out.stderr);
    assert!(err.contains("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    // Success, and its environment.
    let out = kubectl_ok(kc, &["exec", "shell", "--", "sh", "-c", "echo $HOSTNAME"]);
    assert_eq!(out, "shell\n");
    // stdin to the end (v5's close of stdin ends `cat`).
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let out = kubectl_stdin(kc, &["exec", "-i", "shell", "--", "cat"], &big);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), big.len());
    assert!(text(&out.stdout) == big);
    // A terminal (kubectl under a pseudo-terminal of `script`): the command has one, and
    // kubectl's size reaches it (a resize after the start, as under the kubelet: the
    // command waits for it, bounded).
    let cmd = format!(
        "stty cols 91 rows 17; kubectl --kubeconfig {} exec -it shell -- sh -c \
         'tty; for i in $(seq 50); do s=$(stty size 2>/dev/null); [ \"$s\" = \"17 91\" ] && break; sleep 0.1; done; echo \"size $s\"'",
        kc.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script is installed");
    let got = text(&out.stdout);
    assert!(out.status.success(), "{got} {}", text(&out.stderr));
    assert!(got.contains("/dev/pts/"), "{got:?}");
    assert!(got.contains("size 17 91"), "{got:?}");
    // No such command: kubectl reports the runtime's failure, exit 126/127 from Docker.
    let out = kubectl(kc, &["exec", "shell", "--", "no-such-command"]);
    assert!(!out.status.success());
    // A pod that does not exist, a container it lacks.
    let out = kubectl(kc, &["exec", "nope", "--", "true"]);
    assert!(
        text(&out.stderr).contains("pods \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = kubectl(kc, &["exec", "shell", "-c", "x", "--", "true"]);
    assert!(!out.status.success());
}

/// Exec needs `get` on pods/exec (WebSocket) besides `get` on pods; without it kubectl is
/// refused with the apiserver's words.
fn exec_is_authorized(kc: &Path) {
    let grant = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"viewer","namespace":"default"}},
      {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"execer","namespace":"default"}},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"pod-viewer","namespace":"default"},
       "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"pod-execer","namespace":"default"},
       "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list"]},
                {"apiGroups":[""],"resources":["pods/exec"],"verbs":["get","create"]}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"viewer","namespace":"default"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-viewer"},
       "subjects":[{"kind":"ServiceAccount","name":"viewer","namespace":"default"}]},
      {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"execer","namespace":"default"},
       "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-execer"},
       "subjects":[{"kind":"ServiceAccount","name":"execer","namespace":"default"}]}]}"#;
    let out = kubectl_stdin(kc, &["create", "--validate=false", "-f", "-"], grant);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let viewer = kubectl_ok(kc, &["create", "token", "viewer"]);
    let execer = kubectl_ok(kc, &["create", "token", "execer"]);
    let out = kubectl(
        kc,
        &["--token", viewer.trim(), "exec", "shell", "--", "true"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot create resource \"pods/exec\"")
            || err.contains("cannot get resource \"pods/exec\""),
        "{err}"
    );
    let out = kubectl(
        kc,
        &[
            "--token",
            execer.trim(),
            "exec",
            "shell",
            "--",
            "echo",
            "ok",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
}

async fn port_forward(kc: &Path) {
    // The server listens on the pod's loopback address only: reached from inside the pod's
    // network namespace. Several connections, one after another and at once.
    let f = PortForward::start(kc, "pod/shell", 8080);
    for _ in 0..3 {
        let body = http_get_over(f.port).expect("a forwarded connection");
        assert!(body.contains("hi-from-loopback"), "{body}");
    }
    let port = f.port;
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get_over(port)))
        .collect();
    for h in handles {
        let body = h
            .join()
            .unwrap()
            .expect("a concurrent forwarded connection");
        assert!(body.contains("hi-from-loopback"), "{body}");
    }
    drop(f);
    // Nothing listens on 9999: the connection closes empty and kubectl reports the agent's
    // error.
    let f = PortForward::start(kc, "pod/shell", 9999);
    let body = http_get_over(f.port).unwrap_or_default();
    assert!(!body.contains("hi-from"), "{body}");
    let err = wait_for(
        Duration::from_secs(20),
        "kubectl port-forward to report the refused connection",
        || {
            let s = f.stderr.lock().unwrap().clone();
            async move { s.contains("error forwarding port 9999").then_some(s) }
        },
    )
    .await;
    assert!(err.contains("connection refused"), "{err}");
}
