//! Deployments and ReplicaSets.

use serde_json::Value;

use super::{age, containers_and_images, format_selector, int_at, name};
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
