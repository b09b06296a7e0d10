"""The official Kubernetes Python client against a Flotilla apiserver.

Run by tests/python_client.rs, which starts kvstore members and an apiserver and passes
its kubeconfig in KUBECONFIG.
"""

import os
import threading
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "pyclient"


@pytest.fixture(scope="module")
def core():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    api = client.CoreV1Api()
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    yield api


def pod(name, labels):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )


def test_create_read_patch_delete(core):
    created = core.create_namespaced_pod(NS, pod("p1", {"app": "web"}))
    assert created.metadata.uid
    assert created.spec.restart_policy == "Always"
    got = core.read_namespaced_pod("p1", NS)
    assert got.metadata.resource_version == created.metadata.resource_version
    # A dict body goes as a strategic merge patch: the new container merges by name.
    patched = core.patch_namespaced_pod(
        "p1", NS, {"metadata": {"labels": {"tier": "front"}}}
    )
    assert patched.metadata.labels == {"app": "web", "tier": "front"}
    patched = core.patch_namespaced_pod(
        "p1", NS, [{"op": "replace", "path": "/metadata/labels/tier", "value": "back"}]
    )
    assert patched.metadata.labels["tier"] == "back"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("nope", NS)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(NS, pod("p1", {}))
    assert e.value.status == 409
    core.delete_namespaced_pod("p1", NS, grace_period_seconds=0)


def test_list_with_selectors(core):
    for name, tier in [("a", "front"), ("b", "back"), ("c", "front")]:
        core.create_namespaced_pod(NS, pod(name, {"app": "sel", "tier": tier}))
    front = core.list_namespaced_pod(NS, label_selector="app=sel,tier=front")
    assert sorted(p.metadata.name for p in front.items) == ["a", "c"]
    notfront = core.list_namespaced_pod(NS, label_selector="app=sel,tier!=front")
    assert [p.metadata.name for p in notfront.items] == ["b"]
    by_name = core.list_namespaced_pod(NS, field_selector="metadata.name=b")
    assert [p.metadata.name for p in by_name.items] == ["b"]
    page = core.list_namespaced_pod(NS, label_selector="app=sel", limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_pod(
        NS, label_selector="app=sel", limit=2, _continue=page.metadata._continue
    )
    assert len(rest.items) == 1


def test_watch_resumes_after_its_connection_closes(core):
    start = core.list_namespaced_pod(NS).metadata.resource_version
    seen = []
    w = watch.Watch()
    # The server ends the first stream after 2 s; the client resumes from the last
    # resourceVersion it saw and must miss nothing written meanwhile.
    def writer():
        for i in range(6):
            core.create_namespaced_pod(NS, pod(f"w{i}", {"app": "watch"}))
            time.sleep(0.7)

    t = threading.Thread(target=writer)
    t.start()
    rv = start
    deadline = time.time() + 30
    streams = 0
    while len(seen) < 6 and time.time() < deadline:
        streams += 1
        for ev in w.stream(
            core.list_namespaced_pod,
            NS,
            label_selector="app=watch",
            resource_version=rv,
            timeout_seconds=2,
        ):
            obj = ev["object"]
            rv = obj.metadata.resource_version
            if ev["type"] == "ADDED":
                seen.append(obj.metadata.name)
    t.join()
    assert seen == [f"w{i}" for i in range(6)]
    assert streams >= 2
