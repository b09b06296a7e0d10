"""Jobs, CronJobs and DaemonSets through the official Python client's typed APIs: every
object the apiserver returns must deserialize into the client's models (required fields
present, kube's defaults applied)."""

import os

import pytest
from kubernetes import client, config
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
