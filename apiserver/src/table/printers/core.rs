//! Printers of the core kinds other than pods.

use serde_json::Value;

use super::{age, arr_at, format_labels, int_at, name, or_none, str_at};
use crate::table::{duration, Column, Printer, AGE, NAME};

pub static NODE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Status", "The status of the node."),
        Column::new("Roles", "The roles of the node."),
        AGE,
        Column::new("Version", "Kubelet version."),
        Column::new("Internal-IP", "The node's internal IP.").wide(),
        Column::new("External-IP", "The node's external IP.").wide(),
        Column::new("OS-Image", "OS image reported by the node.").wide(),
        Column::new("Kernel-Version", "Kernel version reported by the node.").wide(),
        Column::new(
            "Container-Runtime",
            "Container runtime reported by the node.",
        )
        .wide(),
    ],
    cells: |o, now| {
        let ready = arr_at(o, "/status/conditions")
            .iter()
            .find(|c| str_at(c, "/type") == Some("Ready"));
        let mut status = vec![match ready.and_then(|c| str_at(c, "/status")) {
            Some("True") => "Ready",
            Some(_) => "NotReady",
            None => "Unknown",
        }];
        if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push("SchedulingDisabled");
        }
        let mut roles: Vec<&str> = Vec::new();
        if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
            for (k, v) in labels {
                if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                    if !r.is_empty() {
                        roles.push(r);
                    }
                } else if k == "kubernetes.io/role" {
                    if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                        roles.push(v);
                    }
                }
            }
        }
        roles.sort_unstable();
        roles.dedup();
        let address = |ty: &str| {
            arr_at(o, "/status/addresses")
                .iter()
                .find(|a| str_at(a, "/type") == Some(ty))
                .and_then(|a| str_at(a, "/address"))
                .unwrap_or("")
        };
        let info = |f: &str| {
            let v = str_at(o, &format!("/status/nodeInfo/{f}")).unwrap_or("");
            if v.is_empty() {
                "<unknown>".to_string()
            } else {
                v.to_string()
            }
        };
        vec![
            name(o),
            status.join(",").into(),
            or_none(&roles.join(",")),
            age(o, now),
            str_at(o, "/status/nodeInfo/kubeletVersion")
                .unwrap_or("")
                .into(),
            or_none(address("InternalIP")),
            or_none(address("ExternalIP")),
            info("osImage").into(),
            info("kernelVersion").into(),
            info("containerRuntimeVersion").into(),
        ]
    },
};

pub static NAMESPACE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Status", "The phase of the namespace."),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            str_at(o, "/status/phase").unwrap_or("").into(),
            age(o, now),
        ]
    },
};

pub static SERVICE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Type", "The type of the service."),
        Column::new("Cluster-IP", "The cluster IP of the service."),
        Column::new("External-IP", "External addresses of the service."),
        Column::new("Port(s)", "The ports the service exposes."),
        AGE,
        Column::new("Selector", "The pods the service routes to.").wide(),
    ],
    cells: |o, now| {
        let ty = str_at(o, "/spec/type").unwrap_or("ClusterIP");
        let cluster_ip = str_at(o, "/spec/clusterIPs/0")
            .or_else(|| str_at(o, "/spec/clusterIP"))
            .unwrap_or("");
        let external: Vec<&str> = arr_at(o, "/spec/externalIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let external = match ty {
            "ClusterIP" | "NodePort" => or_none(&external.join(",")),
            "LoadBalancer" => {
                let mut lb: Vec<&str> = arr_at(o, "/status/loadBalancer/ingress")
                    .iter()
                    .filter_map(|i| {
                        str_at(i, "/ip")
                            .filter(|s| !s.is_empty())
                            .or_else(|| str_at(i, "/hostname"))
                    })
                    .collect();
                lb.sort_unstable();
                lb.dedup();
                if !external.is_empty() {
                    lb.extend(external);
                    lb.join(",").into()
                } else if !lb.is_empty() {
                    lb.join(",").into()
                } else {
                    "<pending>".into()
                }
            }
            "ExternalName" => str_at(o, "/spec/externalName").unwrap_or("").into(),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = arr_at(o, "/spec/ports")
            .iter()
            .map(|p| {
                let protocol = str_at(p, "/protocol").unwrap_or("TCP");
                let node_port = int_at(p, "/nodePort");
                if node_port > 0 {
                    format!("{}:{node_port}/{protocol}", int_at(p, "/port"))
                } else {
                    format!("{}/{protocol}", int_at(p, "/port"))
                }
            })
            .collect();
        vec![
            name(o),
            ty.into(),
            or_none(cluster_ip),
            external,
            or_none(&ports.join(",")),
            age(o, now),
            format_labels(o.pointer("/spec/selector")).into(),
        ]
    },
};

pub static ENDPOINTS: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Endpoints", "Addresses of the endpoints."),
        AGE,
    ],
    cells: |o, now| {
        let subsets = arr_at(o, "/subsets");
        let text = if subsets.is_empty() {
            "<none>".to_string()
        } else {
            let mut list = Vec::new();
            for s in subsets {
                let ports = arr_at(s, "/ports");
                for a in arr_at(s, "/addresses") {
                    let ip = str_at(a, "/ip").unwrap_or("");
                    if ports.is_empty() {
                        list.push(ip.to_string());
                    }
                    for p in ports {
                        let port = int_at(p, "/port");
                        list.push(if ip.contains(':') {
                            format!("[{ip}]:{port}")
                        } else {
                            format!("{ip}:{port}")
                        });
                    }
                }
            }
            let shown = list.iter().take(3).cloned().collect::<Vec<_>>().join(",");
            if list.len() > 3 {
                format!("{shown} + {} more...", list.len() - 3)
            } else {
                shown
            }
        };
        vec![name(o), text.into(), age(o, now)]
    },
};

pub static CONFIGMAP: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[NAME, Column::new("Data", "Number of entries."), AGE],
    cells: |o, now| {
        let count = |k: &str| o.get(k).and_then(Value::as_object).map_or(0, |m| m.len());
        vec![
            name(o),
            ((count("data") + count("binaryData")) as i64).into(),
            age(o, now),
        ]
    },
};

pub static SECRET: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Type", "The type of the secret."),
        Column::new("Data", "Number of entries."),
        AGE,
    ],
    cells: |o, now| {
        let data = o
            .get("data")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        vec![
            name(o),
            str_at(o, "/type").unwrap_or("Opaque").into(),
            (data as i64).into(),
            age(o, now),
        ]
    },
};

pub static SERVICEACCOUNT: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[NAME, Column::new("Secrets", "Number of secrets."), AGE],
    cells: |o, now| {
        vec![
            name(o),
            (arr_at(o, "/secrets").len() as i64).into(),
            age(o, now),
        ]
    },
};

pub static EVENT: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        Column::new("Last Seen", "Time since the event was last seen."),
        Column::new("Type", "Normal or Warning."),
        Column::new("Reason", "Why the event happened."),
        Column::new("Object", "The object the event is about."),
        Column::new("Subobject", "The part of the object.").wide(),
        Column::new("Source", "Who reported the event.").wide(),
        Column::new("Message", "What happened."),
        Column::new("First Seen", "Time since the event was first seen.").wide(),
        Column::new("Count", "How often it happened.").wide(),
        NAME.wide(),
    ],
    cells: |o, now| {
        let first_ts = str_at(o, "/firstTimestamp").or_else(|| str_at(o, "/eventTime"));
        let first = duration::since(first_ts, now);
        let last = if let Some(t) = str_at(o, "/series/lastObservedTime") {
            duration::since(Some(t), now)
        } else if let Some(t) = str_at(o, "/lastTimestamp") {
            duration::since(Some(t), now)
        } else {
            first.clone()
        };
        let mut count = if o.get("series").is_some_and(|s| !s.is_null()) {
            int_at(o, "/series/count")
        } else {
            int_at(o, "/count")
        };
        if count == 0 {
            count = 1;
        }
        let kind = str_at(o, "/involvedObject/kind")
            .or_else(|| str_at(o, "/regarding/kind"))
            .unwrap_or("")
            .to_lowercase();
        let obj_name = str_at(o, "/involvedObject/name")
            .or_else(|| str_at(o, "/regarding/name"))
            .unwrap_or("");
        let object = if obj_name.is_empty() {
            kind
        } else {
            format!("{kind}/{obj_name}")
        };
        let component = str_at(o, "/source/component")
            .filter(|s| !s.is_empty())
            .or_else(|| str_at(o, "/reportingController"))
            .or_else(|| str_at(o, "/reportingComponent"))
            .unwrap_or("");
        let host = str_at(o, "/source/host")
            .filter(|s| !s.is_empty())
            .or_else(|| str_at(o, "/reportingInstance"))
            .unwrap_or("");
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        let message = str_at(o, "/message")
            .or_else(|| str_at(o, "/note"))
            .unwrap_or("")
            .trim();
        vec![
            last.into(),
            str_at(o, "/type").unwrap_or("").into(),
            str_at(o, "/reason").unwrap_or("").into(),
            object.into(),
            str_at(o, "/involvedObject/fieldPath").unwrap_or("").into(),
            source.into(),
            message.into(),
            first.into(),
            count.into(),
            name(o),
        ]
    },
};

/// kube's replicationControllerColumnDefinitions.
pub static REPLICATIONCONTROLLER: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Desired", "Number of desired pods.").of("integer"),
        Column::new("Current", "Number of actually running pods.").of("integer"),
        Column::new("Ready", "Number of pods ready.").of("integer"),
        AGE,
        Column::new("Containers", "Names of each container in the template.").wide(),
        Column::new(
            "Images",
            "Images referenced by each container in the template.",
        )
        .wide(),
        Column::new("Selector", "Label selector for the pods.").wide(),
    ],
    cells: |o, now| {
        let (names, images) = super::containers_and_images(o, "/spec/template/spec");
        vec![
            name(o),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .into(),
            super::int_at(o, "/status/replicas").into(),
            super::int_at(o, "/status/readyReplicas").into(),
            age(o, now),
            names,
            images,
            super::format_labels(o.pointer("/spec/selector")).into(),
        ]
    },
};
