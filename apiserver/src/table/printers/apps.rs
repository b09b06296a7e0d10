//! Deployments, ReplicaSets, DaemonSets, StatefulSets and ControllerRevisions.

use serde_json::Value;

use super::{age, containers_and_images, format_labels, format_selector, int_at, name, str_at};
use crate::table::{Column, Printer, AGE, NAME};

fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

pub static DEPLOYMENT: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Ready", "Ready replicas of the desired ones."),
        Column::new("Up-to-date", "Replicas of the current template."),
        Column::new("Available", "Replicas available to users."),
        AGE,
        Column::new("Containers", "Names of the template's containers.").wide(),
        Column::new("Images", "Images of the template's containers.").wide(),
        Column::new("Selector", "The deployment's label selector.").wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/template/spec");
        vec![
            name(o),
            format!("{}/{}", int_at(o, "/status/readyReplicas"), replicas(o)).into(),
            int_at(o, "/status/updatedReplicas").into(),
            int_at(o, "/status/availableReplicas").into(),
            age(o, now),
            names,
            images,
            format_selector(o.pointer("/spec/selector")).into(),
        ]
    },
};

pub static REPLICASET: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Desired", "Desired replicas.").of("integer"),
        Column::new("Current", "Replicas that exist.").of("integer"),
        Column::new("Ready", "Ready replicas.").of("integer"),
        AGE,
        Column::new("Containers", "Names of the template's containers.").wide(),
        Column::new("Images", "Images of the template's containers.").wide(),
        Column::new("Selector", "The replica set's label selector.").wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/template/spec");
        let selector = format_selector(o.pointer("/spec/selector"));
        vec![
            name(o),
            replicas(o).into(),
            int_at(o, "/status/replicas").into(),
            int_at(o, "/status/readyReplicas").into(),
            age(o, now),
            names,
            images,
            if selector.is_empty() {
                "<none>".to_string()
            } else {
                selector
            }
            .into(),
        ]
    },
};

pub static DAEMONSET: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Desired", "The total number of nodes that should be running the daemon pod.").of("integer"),
        Column::new("Current", "The number of nodes running at least one daemon pod and are supposed to.").of("integer"),
        Column::new("Ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.").of("integer"),
        Column::new("Up-to-date", "The total number of nodes that are running updated daemon pod").of("integer"),
        Column::new("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)").of("integer"),
        Column::new("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node."),
        AGE,
        Column::new("Containers", "Names of each container in the template.").wide(),
        Column::new("Images", "Images referenced by each container in the template.").wide(),
        Column::new("Selector", "A label query over pods that are managed by the daemon set.").wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/template/spec");
        vec![
            name(o),
            int_at(o, "/status/desiredNumberScheduled").into(),
            int_at(o, "/status/currentNumberScheduled").into(),
            int_at(o, "/status/numberReady").into(),
            int_at(o, "/status/updatedNumberScheduled").into(),
            int_at(o, "/status/numberAvailable").into(),
            format_labels(o.pointer("/spec/template/spec/nodeSelector")).into(),
            age(o, now),
            names,
            images,
            format_selector(o.pointer("/spec/selector")).into(),
        ]
    },
};

pub static CONTROLLERREVISION: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Controller", "Controller of the object"),
        Column::new(
            "Revision",
            "Revision indicates the revision of the state represented by Data.",
        )
        .of("integer"),
        AGE,
    ],
    cells: |o, now| {
        let owner = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            });
        let controller = match owner {
            Some(r) => {
                let kind = str_at(r, "/kind").unwrap_or("").to_lowercase();
                let group = str_at(r, "/apiVersion")
                    .and_then(|v| v.split_once('/'))
                    .map(|(g, _)| g);
                match group {
                    Some(g) => format!("{kind}.{g}/{}", str_at(r, "/name").unwrap_or("")),
                    None => format!("{kind}/{}", str_at(r, "/name").unwrap_or("")),
                }
            }
            None => "<none>".into(),
        };
        vec![
            name(o),
            controller.into(),
            int_at(o, "/revision").into(),
            age(o, now),
        ]
    },
};

pub static STATEFULSET: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Ready", "Number of the pod with ready state"),
        AGE,
        Column::new("Containers", "Names of each container in the template.").wide(),
        Column::new(
            "Images",
            "Images referenced by each container in the template.",
        )
        .wide(),
    ],
    cells: |o, now| {
        let (names, images) = containers_and_images(o, "/spec/template/spec");
        vec![
            name(o),
            format!("{}/{}", int_at(o, "/status/readyReplicas"), replicas(o)).into(),
            age(o, now),
            names,
            images,
        ]
    },
};
