//! Leases, PriorityClasses, EndpointSlices, PodDisruptionBudgets, RBAC bindings and
//! APIServices.

use serde_json::Value;

use super::{age, arr_at, int_at, list_with_more, name, str_at};
use crate::table::{Column, Printer, AGE, NAME};

pub static LEASE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[NAME, Column::new("Holder", "Who holds the lease."), AGE],
    cells: |o, now| {
        vec![
            name(o),
            str_at(o, "/spec/holderIdentity").unwrap_or("").into(),
            age(o, now),
        ]
    },
};

pub static PRIORITYCLASS: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Value", "The priority.").of("integer"),
        Column::new(
            "Global-Default",
            "Whether pods without a class get this one.",
        )
        .of("boolean"),
        AGE,
        Column::new(
            "PreemptionPolicy",
            "Whether pods of this class preempt others.",
        ),
    ],
    cells: |o, now| {
        vec![
            name(o),
            int_at(o, "/value").into(),
            o.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age(o, now),
            str_at(o, "/preemptionPolicy").unwrap_or("").into(),
        ]
    },
};

pub static ENDPOINTSLICE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("AddressType", "IPv4, IPv6 or FQDN."),
        Column::new("Ports", "The slice's ports."),
        Column::new("Endpoints", "The slice's addresses."),
        AGE,
    ],
    cells: |o, now| {
        let ports: Vec<String> = arr_at(o, "/ports")
            .iter()
            .map(|p| match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => str_at(p, "/name").unwrap_or("*").to_string(),
            })
            .collect();
        let addresses: Vec<String> = arr_at(o, "/endpoints")
            .iter()
            .flat_map(|e| arr_at(e, "/addresses").iter())
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        vec![
            name(o),
            str_at(o, "/addressType").unwrap_or("").into(),
            list_with_more(&ports).into(),
            list_with_more(&addresses).into(),
            age(o, now),
        ]
    },
};

pub static ROLEBINDING: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new("Role", "The bound role."),
        AGE,
        Column::new("Users", "Users bound.").wide(),
        Column::new("Groups", "Groups bound.").wide(),
        Column::new("ServiceAccounts", "Service accounts bound.").wide(),
    ],
    cells: |o, now| {
        let role = format!(
            "{}/{}",
            str_at(o, "/roleRef/kind").unwrap_or(""),
            str_at(o, "/roleRef/name").unwrap_or("")
        );
        let (mut users, mut groups, mut sas) = (vec![], vec![], vec![]);
        for s in arr_at(o, "/subjects") {
            let n = str_at(s, "/name").unwrap_or("").to_string();
            match str_at(s, "/kind") {
                Some("User") => users.push(n),
                Some("Group") => groups.push(n),
                Some("ServiceAccount") => {
                    sas.push(format!("{}/{n}", str_at(s, "/namespace").unwrap_or("")))
                }
                _ => {}
            }
        }
        vec![
            name(o),
            role.into(),
            age(o, now),
            users.join(", ").into(),
            groups.join(", ").into(),
            sas.join(", ").into(),
        ]
    },
};

/// An IntOrString spec field as kube prints it, `N/A` when unset.
fn int_or_string(o: &Value, at: &str) -> Value {
    match o.pointer(at) {
        Some(Value::Number(n)) => n.to_string().into(),
        Some(Value::String(s)) => s.clone().into(),
        _ => "N/A".into(),
    }
}

pub static PODDISRUPTIONBUDGET: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new(
            "Min Available",
            "The minimum number of pods that must be available.",
        ),
        Column::new(
            "Max Unavailable",
            "The maximum number of pods that may be unavailable.",
        ),
        Column::new(
            "Allowed Disruptions",
            "Calculated number of pods that may be disrupted at this time.",
        )
        .of("integer"),
        AGE,
    ],
    cells: |o, now| {
        vec![
            name(o),
            int_or_string(o, "/spec/minAvailable"),
            int_or_string(o, "/spec/maxUnavailable"),
            int_at(o, "/status/disruptionsAllowed").into(),
            age(o, now),
        ]
    },
};

/// kube-aggregator's columns: the Service (or Local) and the Available condition, with its
/// reason when it is not True.
pub static APISERVICE: Printer = Printer {
    conditions: super::no_conditions,
    columns: &[
        NAME,
        Column::new(
            "Service",
            "The service that serves the group version, or Local.",
        ),
        Column::new("Available", "Whether the group version is available."),
        AGE,
    ],
    cells: |o, now| {
        let service = match (
            str_at(o, "/spec/service/namespace"),
            str_at(o, "/spec/service/name"),
        ) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            _ => "Local".to_string(),
        };
        let available = arr_at(o, "/status/conditions")
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
            .map(|c| {
                let status = c.get("status").and_then(Value::as_str).unwrap_or("Unknown");
                match c.get("reason").and_then(Value::as_str) {
                    Some(r) if status != "True" => format!("{status} ({r})"),
                    _ => status.to_string(),
                }
            })
            .unwrap_or_else(|| "Unknown".to_string());
        vec![name(o), service.into(), available.into(), age(o, now)]
    },
};
