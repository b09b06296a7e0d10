//! Service networking on the README's cluster: the `web` Service of `tests/up.rs` by
//! name and cluster IP from a pod on each node (cluster DNS through the kube-dns Service,
//! the proxies' rules, the routed pod network), its NodePort and load-balancer address
//! from the host, `dig @10.96.0.10` answers, Service variables in containers and the
//! apiservers through the `kubernetes` Service, and an unready pod dropped from the rules.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};

use crate::common::k8s::{http_get_over, kubectl_ok, PortForward};
use crate::common::wait_for;

/// The body of `GET /` at `ip:port`, trimmed.
async fn body(ip: &str, port: u16) -> Option<String> {
    let r = crate::common::agents::http_get(ip, port).await?;
    Some(r.split_once("\r\n\r\n")?.1.trim().to_string())
}

/// Fetches `ip:port` until one round of 30 requests reached every pod and none failed.
async fn reaches_all(what: &str, ip: &str, port: u16, bodies: &BTreeSet<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = BTreeSet::new();
        let mut failed = 0;
        for _ in 0..30 {
            match body(ip, port).await {
                Some(b) => {
                    seen.insert(b);
                }
                None => failed += 1,
            }
        }
        if &seen == bodies && failed == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} ({ip}:{port}): the last round reached {seen:?} of {bodies:?}, {failed} failed"
        );
    }
}

/// `dig` against the cluster DNS from the host; the answer section, one record a line.
fn dig(args: &[&str]) -> (String, String) {
    let out = Command::new("dig")
        .args(["@10.96.0.10", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig (dnsutils; scripts/setup --test)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_default();
    (status, text)
}

fn short(args: &[&str]) -> Vec<String> {
    let out = Command::new("dig")
        .args(["@10.96.0.10", "+short", "+time=2", "+tries=2"])
        .args(args)
        .output()
        .expect("dig");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// A pod on `node` that resolves each name with the cluster DNS and fetches it
/// (busybox's nslookup and nc: Debian's static busybox wget crashes in libc's resolver),
/// printing
/// `OK <name> <body>` or `FAIL <name>` for each, then sleeps.
fn client_pod(node: &str, names: &[&str], image: &str) -> Pod {
    let mut script = String::new();
    for n in names {
        script.push_str(&format!(
            "a=$(nslookup {n} 2>/dev/null | awk '/^Address: / {{print $2}}' | tail -1); \
             b=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 \"$a\" 80 | tail -1); \
             if [ -n \"$a\" ] && [ -n \"$b\" ]; then echo \"OK {n} $b\"; \
             else echo \"FAIL {n} ($a)\"; fi; "
        ));
    }
    script.push_str("sleep 3600");
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("client-{node}"), "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": image, "command": ["sh", "-c", script]}]
        }
    }))
    .unwrap()
}

pub async fn check(kc: &std::path::Path, client: &kube::Client, web: &[Pod], image: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("web").await.unwrap();
    let cluster_ip = svc.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let bodies: BTreeSet<String> = web
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();

    // From the host: the cluster DNS answers for the Service (the proxies carry
    // 10.96.0.10 to a DNS server), and the cluster IP reaches the pods.
    wait_for(
        Duration::from_secs(60),
        "dig web.default.svc.cluster.local",
        || async {
            (short(&["web.default.svc.cluster.local"]) == vec![cluster_ip.clone()]).then_some(())
        },
    )
    .await;
    let (status, text) = dig(&["missing.default.svc.cluster.local"]);
    assert_eq!(status, "NXDOMAIN", "{text}");
    let rev: Vec<&str> = cluster_ip.split('.').rev().collect();
    let ptr = format!("{}.in-addr.arpa", rev.join("."));
    assert_eq!(
        short(&["-t", "PTR", &ptr]),
        vec!["web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(&["-t", "TXT", "dns-version.cluster.local"]),
        vec!["\"1.1.0\""]
    );
    reaches_all("the cluster IP from the host", &cluster_ip, 80, &bodies).await;

    // A headless Service, an ExternalName and a named port (SRV).
    let extra = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web-headless, namespace: default}}
spec: {{clusterIP: None, selector: {{app: web}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: default}}
spec: {{type: ExternalName, externalName: db.example.com}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-np, namespace: default}}
spec: {{type: NodePort, selector: {{app: web}}, ports: [{{name: http, port: 80, nodePort: 30080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-lb, namespace: default}}
spec: {{type: LoadBalancer, selector: {{app: web}}, ports: [{{name: http, port: 8080, targetPort: 80}}]}}
"#
    );
    let o = crate::common::k8s::kubectl_stdin(kc, &["apply", "-f", "-"], &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut ips: Vec<String> = web
        .iter()
        .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap())
        .collect();
    ips.sort();
    wait_for(Duration::from_secs(30), "headless A records", || async {
        (short(&["web-headless.default.svc.cluster.local"]) == ips).then_some(())
    })
    .await;
    assert_eq!(
        short(&["-t", "CNAME", "db.default.svc.cluster.local"]),
        vec!["db.example.com."]
    );
    let srv = short(&["-t", "SRV", "_http._tcp.web-np.default.svc.cluster.local"]);
    assert_eq!(
        srv,
        vec!["0 100 80 web-np.default.svc.cluster.local."],
        "{srv:?}"
    );

    // The NodePort on the host's address, and the load-balancer address.
    let host = agent::machine::default_ip().to_string();
    reaches_all("the NodePort", &host, 30080, &bodies).await;
    let lb = wait_for(
        Duration::from_secs(30),
        "a load-balancer address",
        || async {
            services
                .get("web-lb")
                .await
                .ok()?
                .status?
                .load_balancer?
                .ingress?
                .first()?
                .ip
                .clone()
        },
    )
    .await;
    reaches_all("the load-balancer address", &lb, 8080, &bodies).await;

    // From a pod on each node: the Service by its short and full names.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // (busybox's nslookup applies the search list only to names without a dot, so
    // `web.default` is not asked here; the agent tests check the search line itself.)
    let names = ["web", "web.default.svc.cluster.local"];
    for node in ["flotilla-0", "flotilla-1"] {
        pods.create(&PostParams::default(), &client_pod(node, &names, image))
            .await
            .unwrap();
    }
    for node in ["flotilla-0", "flotilla-1"] {
        let name = format!("client-{node}");
        let log = wait_for(
            Duration::from_secs(90),
            "the client pod's fetches",
            || async {
                let log = pods.logs(&name, &Default::default()).await.ok()?;
                (log.lines().count() >= names.len()).then_some(log)
            },
        )
        .await;
        for n in names {
            let line = log
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(n))
                .unwrap_or_else(|| panic!("{name}: no line for {n} in {log}"));
            assert!(line.starts_with("OK "), "{name}: {line}\n{log}");
            assert!(
                bodies.contains(line.split_whitespace().nth(2).unwrap_or("")),
                "{line}"
            );
        }
        // kubectl exec in it (through the apiserver and this node's agent, with `up`'s
        // certificates): the cluster DNS answers there too.
        let out = kubectl_ok(
            kc,
            &[
                "exec",
                &name,
                "--",
                "nslookup",
                "web.default.svc.cluster.local",
            ],
        );
        assert!(out.contains(&cluster_ip), "{out}");
        // The kubelet's Service variables, and the apiservers through the `kubernetes`
        // Service (a TLS port accepting the connection is enough here).
        let out = kubectl_ok(
            kc,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $WEB_SERVICE_HOST $WEB_PORT; \
                 printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT >/dev/null; \
                 echo rc=$?",
            ],
        );
        let want = format!("10.96.0.1:443 {cluster_ip} tcp://{cluster_ip}:80");
        assert!(out.contains(&want), "want {want:?} in {out}");
        assert!(
            out.contains("rc=0"),
            "the apiserver through 10.96.0.1: {out}"
        );
        pods.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    // kubectl port-forward reaches a web pod's port 80.
    let web0 = web[0].metadata.name.clone().unwrap();
    let f = PortForward::start(kc, &format!("pod/{web0}"), 80);
    let answer = http_get_over(f.port).expect("a forwarded connection");
    assert!(answer.contains(&web0), "{answer}");
    drop(f);

    // A pod turned unready leaves the rules: its readiness probe passes for a while,
    // then fails; from the moment its status says so, the cluster IP refuses.
    let flap = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: flap, namespace: default, labels: {{app: flap}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo flap > /www/index.html && touch /www/ready; (sleep 20; rm /www/ready) & exec httpd -f -p 80 -h /www"]
    readinessProbe: {{exec: {{command: ["test", "-f", "/www/ready"]}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: flap, namespace: default}}
spec: {{selector: {{app: flap}}, ports: [{{port: 80}}]}}
"#
    );
    let o = crate::common::k8s::kubectl_stdin(kc, &["apply", "-f", "-"], &flap);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let flap_ip = services
        .get("flap")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    wait_for(Duration::from_secs(60), "flap to serve", || async {
        body(&flap_ip, 80).await.filter(|b| b == "flap")
    })
    .await;
    let ready = |p: &Pod| crate::common::agents::pod_ready(p);
    wait_for(Duration::from_secs(60), "flap to turn unready", || async {
        let p = pods.get("flap").await.ok()?;
        (!ready(&p)).then_some(())
    })
    .await;
    let unready = std::time::Instant::now();
    wait_for(
        Duration::from_secs(10),
        "the cluster IP to refuse",
        || async {
            let r = tokio::net::TcpStream::connect((flap_ip.as_str(), 80)).await;
            r.is_err().then_some(())
        },
    )
    .await;
    eprintln!(
        "unready pod out of the rules {:?} after its status said so",
        unready.elapsed()
    );
    let o = crate::common::k8s::kubectl_stdin(kc, &["delete", "-f", "-", "--wait=false"], &flap);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
