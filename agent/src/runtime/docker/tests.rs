use super::*;

#[test]
fn image_references_split_into_repo_and_tag() {
    assert_eq!(split_image("busybox"), ("busybox", "latest"));
    assert_eq!(split_image("busybox:1.36"), ("busybox", "1.36"));
    assert_eq!(
        split_image("localhost:5000/app"),
        ("localhost:5000/app", "latest")
    );
    assert_eq!(
        split_image("localhost:5000/app:v2"),
        ("localhost:5000/app", "v2")
    );
    assert_eq!(
        container_name(&["k8s", "c", "web-1", "default", "u-1", "0"]),
        "k8s_c_web-1_default_u-1_0"
    );
}

#[test]
fn inspected_states_map_to_the_runtime_view() {
    let v = json!({
        "Id": "abc", "Image": "sha256:1", "LogPath": "/x.log",
        "Config": {"Labels": {L_CONTAINER: "c", L_ATTEMPT: "2", L_INIT: "false", L_HASH: "9", L_IMAGE: "busybox:1", L_KIND: "container"}},
        "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": true,
                  "StartedAt": "2026-12-01T10:00:00.5Z", "FinishedAt": "2026-12-01T10:01:00Z", "Error": ""}
    });
    let Some(Inspected::Container(c)) = from_inspect(&v) else {
        panic!()
    };
    assert_eq!(
        (c.name.as_str(), c.attempt, c.hash, c.image_id.as_str()),
        ("c", 2, 9, "docker://sha256:1")
    );
    let ContainerState::Exited {
        exit_code,
        reason,
        started_at,
        ..
    } = c.state
    else {
        panic!()
    };
    assert_eq!((exit_code, reason.as_str()), (137, "OOMKilled"));
    assert!(started_at.is_some());
    // Created with an error: the start failed.
    let v = json!({
        "Id": "d", "Config": {"Labels": {L_CONTAINER: "c", L_KIND: "container"}},
        "State": {"Status": "created", "ExitCode": 127, "StartedAt": "0001-01-01T00:00:00Z",
                  "FinishedAt": "0001-01-01T00:00:00Z", "Error": "exec: \"nope\": executable file not found"}
    });
    let Some(Inspected::Container(c)) = from_inspect(&v) else {
        panic!()
    };
    let ContainerState::Exited {
        exit_code,
        reason,
        message,
        ..
    } = c.state
    else {
        panic!()
    };
    assert_eq!((exit_code, reason.as_str()), (127, "StartError"));
    assert!(message.unwrap().contains("executable file not found"));
    let v = json!({
        "Id": "s", "Config": {"Labels": {L_KIND: "sandbox"}}, "State": {"Status": "running"},
        "NetworkSettings": {"Networks": {"flotilla": {"NetworkID": "flotilla", "IPAddress": "172.20.0.5"}}}
    });
    let Some(Inspected::Sandbox(s)) = from_inspect(&v) else {
        panic!()
    };
    assert_eq!((s.ready, s.ip.as_deref()), (true, Some("172.20.0.5")));
}
