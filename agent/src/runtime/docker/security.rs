//! A container's securityContext in a Docker create body (what dockershim wrote), and
//! the kubelet's runAsNonRoot verification against the image's user. Pure.
//!
//! - runAsUser / runAsGroup → `User` (`uid`, `uid:gid`; a group alone keeps the image's
//!   user); supplementalGroups and fsGroup → `HostConfig.GroupAdd`;
//! - readOnlyRootFilesystem → `HostConfig.ReadonlyRootfs`; privileged →
//!   `HostConfig.Privileged`; capabilities → `HostConfig.CapAdd` / `CapDrop` (Docker takes
//!   Kubernetes' names, without `CAP_`);
//! - allowPrivilegeEscalation: false → `SecurityOpt: no-new-privileges`; seccomp
//!   Unconfined → `seccomp=unconfined`, Localhost → `seccomp=<the profile's JSON>`,
//!   RuntimeDefault → Docker's default profile.

use serde_json::{json, Value};

use crate::runtime::{PodRef, Seccomp, Security};

/// Whether the image's user is needed to start the container: to verify runAsNonRoot
/// without a runAsUser, or to pair a runAsGroup with the image's user.
pub fn needs_image_user(s: &Security) -> bool {
    s.run_as_user.is_none() && (s.run_as_non_root || s.run_as_group.is_some())
}

/// The user part of an image's `Config.User` (`user`, `uid`, `user:group`).
fn user_part(image_user: &str) -> &str {
    image_user.split(':').next().unwrap_or("")
}

/// Sets the fields of `s` in `body` (a create body with a `HostConfig` object);
/// `image_user` is the image's `Config.User` (read when [`needs_image_user`]).
pub fn apply(s: &Security, image_user: &str, body: &mut Value) {
    let user = match (s.run_as_user, s.run_as_group) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => {
            let u = user_part(image_user);
            Some(format!("{}:{g}", if u.is_empty() { "0" } else { u }))
        }
        (None, None) => None,
    };
    if let Some(u) = user {
        body["User"] = json!(u);
    }
    let host = &mut body["HostConfig"];
    if !s.supplemental_groups.is_empty() {
        let groups: Vec<String> = s.supplemental_groups.iter().map(i64::to_string).collect();
        host["GroupAdd"] = json!(groups);
    }
    if s.read_only_root {
        host["ReadonlyRootfs"] = json!(true);
    }
    if s.privileged {
        host["Privileged"] = json!(true);
    }
    if !s.cap_add.is_empty() {
        host["CapAdd"] = json!(s.cap_add);
    }
    if !s.cap_drop.is_empty() {
        host["CapDrop"] = json!(s.cap_drop);
    }
    let mut opts = Vec::new();
    if s.no_new_privileges {
        opts.push("no-new-privileges".to_string());
    }
    match &s.seccomp {
        Seccomp::RuntimeDefault => {}
        Seccomp::Unconfined => opts.push("seccomp=unconfined".into()),
        Seccomp::Localhost { profile, .. } => opts.push(format!("seccomp={profile}")),
    }
    if !opts.is_empty() {
        host["SecurityOpt"] = json!(opts);
    }
}

/// The kubelet's `verifyRunAsNonRoot`: a container with runAsNonRoot must not run as uid
/// 0, by its runAsUser or by its image's user (none is root; a name cannot be checked).
/// The error is a CreateContainerConfigError's message.
pub fn verify_run_as_non_root(
    s: &Security,
    image_user: &str,
    pod: &PodRef,
    container: &str,
) -> Result<(), String> {
    if !s.run_as_non_root {
        return Ok(());
    }
    let which = format!(
        "(pod: \"{}_{}({})\", container: {container})",
        pod.name, pod.namespace, pod.uid
    );
    if let Some(u) = s.run_as_user {
        if u == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy {which}"
            ));
        }
        return Ok(());
    }
    let user = user_part(image_user);
    match user.parse::<i64>() {
        _ if user.is_empty() => Err(format!(
            "container has runAsNonRoot and image will run as root {which}"
        )),
        Ok(0) => Err(format!(
            "container has runAsNonRoot and image will run as root {which}"
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {which}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &Security, image_user: &str) -> Value {
        let mut b = json!({"Image": "busybox", "HostConfig": {"NetworkMode": "container:x"}});
        apply(s, image_user, &mut b);
        b
    }

    #[test]
    fn the_default_adds_nothing() {
        assert_eq!(
            body(&Security::default(), "1000"),
            json!({"Image": "busybox", "HostConfig": {"NetworkMode": "container:x"}})
        );
    }

    #[test]
    fn every_field_maps_to_dockers() {
        let s = Security {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000, 2000],
            run_as_non_root: true,
            read_only_root: true,
            privileged: false,
            cap_add: vec!["NET_BIND_SERVICE".into()],
            cap_drop: vec!["ALL".into()],
            no_new_privileges: true,
            seccomp: Seccomp::Unconfined,
        };
        assert_eq!(
            body(&s, ""),
            json!({
                "Image": "busybox",
                "User": "1000:3000",
                "HostConfig": {
                    "NetworkMode": "container:x",
                    "GroupAdd": ["4000", "2000"],
                    "ReadonlyRootfs": true,
                    "CapAdd": ["NET_BIND_SERVICE"],
                    "CapDrop": ["ALL"],
                    "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
                },
            })
        );
        let privileged = Security {
            privileged: true,
            seccomp: Seccomp::Localhost {
                name: "p.json".into(),
                profile: "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}".into(),
            },
            ..Default::default()
        };
        let b = body(&privileged, "");
        assert_eq!(b["HostConfig"]["Privileged"], true);
        assert_eq!(
            b["HostConfig"]["SecurityOpt"],
            json!(["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"])
        );
    }

    #[test]
    fn users_and_groups() {
        let only_user = Security {
            run_as_user: Some(0),
            ..Default::default()
        };
        assert_eq!(body(&only_user, "nobody")["User"], "0");
        let only_group = Security {
            run_as_group: Some(5),
            ..Default::default()
        };
        assert!(needs_image_user(&only_group));
        assert_eq!(body(&only_group, "app:staff")["User"], "app:5");
        assert_eq!(body(&only_group, "")["User"], "0:5");
        assert!(!needs_image_user(&only_user));
    }

    #[test]
    fn run_as_non_root_refuses_root_and_unverifiable_users() {
        let pod = PodRef {
            uid: "u1".into(),
            namespace: "ns".into(),
            name: "p".into(),
        };
        let non_root = Security {
            run_as_non_root: true,
            ..Default::default()
        };
        assert!(needs_image_user(&non_root));
        assert_eq!(
            verify_run_as_non_root(&non_root, "", &pod, "c"),
            Err("container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)".into())
        );
        assert!(verify_run_as_non_root(&non_root, "0:0", &pod, "c").is_err());
        assert_eq!(
            verify_run_as_non_root(&non_root, "1000:1000", &pod, "c"),
            Ok(())
        );
        assert_eq!(
            verify_run_as_non_root(&non_root, "nginx", &pod, "c"),
            Err("container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: \"p_ns(u1)\", container: c)".into())
        );
        let root = Security {
            run_as_user: Some(0),
            ..non_root.clone()
        };
        assert_eq!(
            verify_run_as_non_root(&root, "1000", &pod, "c"),
            Err(
                "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)"
                    .into()
            )
        );
        let user = Security {
            run_as_user: Some(1000),
            ..non_root
        };
        assert_eq!(verify_run_as_non_root(&user, "", &pod, "c"), Ok(()));
        // Without runAsNonRoot nothing is checked.
        assert_eq!(
            verify_run_as_non_root(&Security::default(), "", &pod, "c"),
            Ok(())
        );
    }
}
