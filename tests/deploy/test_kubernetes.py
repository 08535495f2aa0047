"""deploy/k8s: every object against the Kubernetes API's own schemas (kubernetes-validate ships them, strict: an
unknown or misspelt field is an error), the kustomizations rendered by ``kubectl kustomize`` where kubectl is
installed, and the wiring between the objects (selectors, Secrets, per-replica upstream URLs).

``kubectl apply --dry-run=client`` is not run: even a client-side dry run asks an API server for its schema."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import ValidationError

from tests.deploy import files

KUBERNETES_VERSION = "1.31.0"  # the oldest minor the manifests promise to work on (sidecar-free, policy/v1 PDB)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return files.k8s_base_resources()


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    rendered = files.kustomize(files.K8S_EXAMPLE)
    if rendered is None:
        pytest.skip("kubectl is not installed (kubectl kustomize renders the overlay offline)")
    return rendered


def _validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_base_objects_match_the_kubernetes_schemas(base) -> None:
    for document in base:
        _validate(document)


def test_rendered_example_matches_the_schemas_and_is_namespaced(example) -> None:
    for document in example:
        _validate(document)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "memproxy", document["metadata"]["name"]
    assert {doc["kind"] for doc in example} >= {
        "StatefulSet",
        "Service",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }


def test_the_schema_check_finds_mistakes(base) -> None:
    proxy = files.find(base, "StatefulSet", "memproxy")
    broken = {**proxy, "spec": {**proxy["spec"], "replica": 3}}
    with pytest.raises(ValidationError):
        _validate(broken)
    container = {**files.containers(proxy)[0], "readinessProbe": {"httpGet": {"path": "/readyz"}}}  # no port
    template = {**proxy["spec"]["template"], "spec": {**proxy["spec"]["template"]["spec"], "containers": [container]}}
    with pytest.raises(ValidationError):
        _validate({**proxy, "spec": {**proxy["spec"], "template": template}})


def test_proxy_runs_three_non_root_replicas_with_probes_and_a_disruption_budget(base) -> None:
    proxy = files.find(base, "StatefulSet", "memproxy")
    (container,) = files.containers(proxy)
    pod = proxy["spec"]["template"]["spec"]
    assert proxy["spec"]["replicas"] == 3
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    budget = files.find(base, "PodDisruptionBudget", "memproxy")
    assert budget["spec"]["selector"]["matchLabels"] == proxy["spec"]["selector"]["matchLabels"]
    assert 0 < budget["spec"]["minAvailable"] < proxy["spec"]["replicas"]


def test_vllm_replicas_each_get_a_gpu_and_a_stable_name(base) -> None:
    vllm = files.find(base, "StatefulSet", "vllm")
    service = files.find(base, "Service", vllm["spec"]["serviceName"])
    (container,) = files.containers(vllm)
    assert vllm["spec"]["replicas"] == 2
    assert service["spec"]["clusterIP"] == "None", "a headless Service gives each replica its own DNS name"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert {"--enable-prefix-caching", "--enable-lora", "--enable-auto-tool-choice"} <= set(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_proxy_lists_one_upstream_url_per_vllm_replica(base) -> None:
    config = files.find(base, "ConfigMap", "memproxy-config")["data"]
    vllm = files.find(base, "StatefulSet", "vllm")
    (port,) = files.find(base, "Service", "vllm")["spec"]["ports"]
    urls = config["MEMPROXY_UPSTREAM_URLS"].split(",")
    service_name, replicas = vllm["spec"]["serviceName"], vllm["spec"]["replicas"]
    expected = [f"http://vllm-{i}.{service_name}:{port['port']}/v1" for i in range(replicas)]
    assert urls == expected


def test_adapters_are_shared_read_write_many_at_one_path(base) -> None:
    claim = files.find(base, "PersistentVolumeClaim", "adapters")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    config = files.find(base, "ConfigMap", "memproxy-config")["data"]
    (vllm,) = files.containers(files.find(base, "StatefulSet", "vllm"))
    vllm_env = {item["name"]: item.get("value") for item in vllm["env"]}
    assert config["MEMPROXY_ADAPTERS_LOADER"] == "resolver"
    assert vllm_env["VLLM_LORA_RESOLVER_CACHE_DIR"] == config["MEMPROXY_ADAPTERS_DIR"]
    for workload in (files.find(base, "StatefulSet", "memproxy"), files.find(base, "StatefulSet", "vllm")):
        pod = workload["spec"]["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: claims.get(m["name"]) for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[config["MEMPROXY_ADAPTERS_DIR"]] == "adapters"


def test_neo4j_keeps_its_data_on_a_volume_and_takes_auth_from_the_secret(base) -> None:
    neo4j = files.find(base, "StatefulSet", "neo4j")
    (container,) = files.containers(neo4j)
    assert [claim["metadata"]["name"] for claim in neo4j["spec"]["volumeClaimTemplates"]] == ["data"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"] == "/data"
    env = {item["name"]: item for item in container["env"]}
    assert env["NEO4J_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "memproxy-secrets"
    assert env["NEO4J_AUTH"]["value"] == "neo4j/$(NEO4J_PASSWORD)"
    config = files.find(base, "ConfigMap", "memproxy-config")["data"]
    assert config["MEMPROXY_NEO4J_URI"] == "bolt://neo4j:7687"


def test_selectors_match_pods(base) -> None:
    workloads = [doc for doc in base if doc["kind"] in ("Deployment", "StatefulSet")]
    pods = [doc["spec"]["template"]["metadata"]["labels"] for doc in workloads]
    for document in base:
        if document["kind"] == "Service":
            selector = document["spec"]["selector"]
        elif document["kind"] == "NetworkPolicy":
            selector = document["spec"]["podSelector"]["matchLabels"]
        elif document["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            selector = document["spec"]["selector"]["matchLabels"]
        else:
            continue
        assert any(selector.items() <= labels.items() for labels in pods), document["metadata"]["name"]


def test_every_secret_and_config_reference_is_provided_by_the_example(example) -> None:
    provided = {
        (doc["kind"], doc["metadata"]["name"]): set(doc.get("data", {}))
        for doc in example
        if doc["kind"] in ("Secret", "ConfigMap")
    }
    for workload in example:
        if workload["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in provided
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in provided[("Secret", ref["name"])], ref
            for variable in re.findall(r"\$\((\w+)\)", " ".join(container.get("args", []))):
                assert any(variable in keys for (kind, _), keys in provided.items() if kind == "ConfigMap"), variable
        for volume in pod["volumes"]:
            if "secret" in volume:
                keys = provided[("Secret", volume["secret"]["secretName"])]
                assert {item["key"] for item in volume["secret"]["items"]} <= keys
