"""Jobs, CronJobs, DaemonSets, StatefulSets, PodDisruptionBudgets and storage objects through
the official Python client's typed APIs: every object the apiserver returns must
deserialize into the client's models (required fields present, kube's defaults applied)."""

import os

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "pyworkloads"


@pytest.fixture(scope="module")
def apis():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    client.CoreV1Api().create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
    )
    yield client.BatchV1Api(), client.AppsV1Api()


def pod_template(labels, restart):
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(
            restart_policy=restart,
            containers=[client.V1Container(name="c", image="busybox", command=["true"])],
        ),
    )


def test_jobs(apis):
    batch, _ = apis
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="pi"),
        spec=client.V1JobSpec(
            completions=3,
            parallelism=2,
            completion_mode="Indexed",
            backoff_limit_per_index=1,
            pod_failure_policy=client.V1PodFailurePolicy(
                rules=[
                    client.V1PodFailurePolicyRule(
                        action="Ignore",
                        on_pod_conditions=[
                            client.V1PodFailurePolicyOnPodConditionsPattern(
                                type="DisruptionTarget", status="True"
                            )
                        ],
                    )
                ]
            ),
            template=pod_template({}, "Never"),
        ),
    )
    made = batch.create_namespaced_job(NS, job)
    assert made.spec.backoff_limit == 2147483647
    assert made.spec.pod_replacement_policy == "Failed"
    assert made.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == made.metadata.uid
    got = batch.read_namespaced_job("pi", NS)
    assert got.spec.completion_mode == "Indexed"
    listed = batch.list_namespaced_job(NS)
    assert [j.metadata.name for j in listed.items] == ["pi"]
    patched = batch.patch_namespaced_job("pi", NS, {"spec": {"suspend": True}})
    assert patched.spec.suspend is True
    with pytest.raises(ApiException) as e:
        batch.patch_namespaced_job("pi", NS, {"spec": {"completionMode": "NonIndexed"}})
    assert e.value.status == 422
    batch.delete_namespaced_job("pi", NS, propagation_policy="Background")


def test_cronjobs(apis):
    batch, _ = apis
    cj = client.V1CronJob(
        metadata=client.V1ObjectMeta(name="nightly"),
        spec=client.V1CronJobSpec(
            schedule="0 3 * * *",
            time_zone="Europe/Paris",
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(template=pod_template({}, "OnFailure"))
            ),
        ),
    )
    made = batch.create_namespaced_cron_job(NS, cj)
    assert made.spec.concurrency_policy == "Allow"
    assert made.spec.failed_jobs_history_limit == 1
    got = batch.read_namespaced_cron_job_status("nightly", NS)
    assert got.status.active is None
    bad = client.V1CronJob(
        metadata=client.V1ObjectMeta(name="bad"),
        spec=client.V1CronJobSpec(
            schedule="@fortnightly",
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(template=pod_template({}, "OnFailure"))
            ),
        ),
    )
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_cron_job(NS, bad)
    assert e.value.status == 422
    assert "unrecognized descriptor: @fortnightly" in e.value.body
    batch.delete_namespaced_cron_job("nightly", NS)


def test_daemonsets(apis):
    _, apps = apis
    ds = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="everywhere"),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels={"app": "e"}),
            template=pod_template({"app": "e"}, "Always"),
        ),
    )
    made = apps.create_namespaced_daemon_set(NS, ds)
    assert made.spec.update_strategy.type == "RollingUpdate"
    assert made.spec.update_strategy.rolling_update.max_unavailable == 1
    assert made.status.desired_number_scheduled == 0
    assert made.metadata.annotations["deprecated.daemonset.template.generation"] == "1"
    changed = apps.patch_namespaced_daemon_set(
        "everywhere",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}},
    )
    assert changed.metadata.annotations["deprecated.daemonset.template.generation"] == "2"
    assert changed.metadata.generation == 2
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_daemon_set(
            "everywhere", NS, {"spec": {"selector": {"matchLabels": {"app": "f"}}}}
        )
    assert e.value.status == 422
    revs = apps.list_namespaced_controller_revision(NS)
    assert revs.items == []
    apps.delete_namespaced_daemon_set("everywhere", NS)


def test_statefulsets(apis):
    _, apps = apis
    sts = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="db"),
        spec=client.V1StatefulSetSpec(
            service_name="db",
            selector=client.V1LabelSelector(match_labels={"app": "db"}),
            template=pod_template({"app": "db"}, "Always"),
            volume_claim_templates=[
                client.V1PersistentVolumeClaim(
                    metadata=client.V1ObjectMeta(name="data"),
                    spec=client.V1PersistentVolumeClaimSpec(
                        access_modes=["ReadWriteOnce"],
                        resources=client.V1VolumeResourceRequirements(
                            requests={"storage": "1Gi"}
                        ),
                    ),
                )
            ],
        ),
    )
    w = watch.Watch()
    made = apps.create_namespaced_stateful_set(NS, sts)
    assert made.spec.replicas == 1
    assert made.spec.pod_management_policy == "OrderedReady"
    assert made.spec.update_strategy.rolling_update.partition == 0
    policy = made.spec.persistent_volume_claim_retention_policy
    assert (policy.when_deleted, policy.when_scaled) == ("Retain", "Retain")
    assert made.spec.volume_claim_templates[0].spec.volume_mode == "Filesystem"
    seen = [
        e["object"].metadata.name
        for e in w.stream(
            apps.list_namespaced_stateful_set,
            NS,
            resource_version="0",
            timeout_seconds=5,
        )
        if e["type"] == "ADDED"
    ]
    assert "db" in seen
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_stateful_set("db", NS, {"spec": {"serviceName": "other"}})
    assert e.value.status == 422
    assert "updates to statefulset spec for fields other than" in e.value.body
    scaled = apps.patch_namespaced_stateful_set_scale("db", NS, {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3
    apps.delete_namespaced_stateful_set("db", NS)


def test_budgets_and_storage():
    policy = client.PolicyV1Api()
    pdb = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="keep"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=2, selector=client.V1LabelSelector(match_labels={"app": "db"})
        ),
    )
    made = policy.create_namespaced_pod_disruption_budget(NS, pdb)
    assert made.metadata.generation == 1
    with pytest.raises(ApiException) as e:
        policy.create_namespaced_pod_disruption_budget(
            NS,
            client.V1PodDisruptionBudget(
                metadata=client.V1ObjectMeta(name="both"),
                spec=client.V1PodDisruptionBudgetSpec(min_available=1, max_unavailable=1),
            ),
        )
    assert e.value.status == 422
    policy.delete_namespaced_pod_disruption_budget("keep", NS)

    storage = client.StorageV1Api()
    sc = storage.create_storage_class(
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name="py-local"), provisioner="example.com/local"
        )
    )
    assert (sc.reclaim_policy, sc.volume_binding_mode) == ("Delete", "Immediate")
    core = client.CoreV1Api()
    pvc = core.create_namespaced_persistent_volume_claim(
        NS,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="c"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="py-local",
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    assert pvc.status.phase == "Pending"
    assert "kubernetes.io/pvc-protection" in pvc.metadata.finalizers
    pv = core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name="py-pv"),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "1Gi"},
                access_modes=["ReadWriteOnce"],
                host_path=client.V1HostPathVolumeSource(path="/tmp/py-pv"),
            ),
        )
    )
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    assert "kubernetes.io/pv-protection" in pv.metadata.finalizers
    core.delete_persistent_volume("py-pv")
    core.delete_namespaced_persistent_volume_claim("c", NS)
    storage.delete_storage_class("py-local")
