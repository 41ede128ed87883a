"""The generated deployments (``deploy/compose.yaml``, ``deploy/k8s/``): in step with their
sources, accepted offline by docker compose (``docker-compose config -q``) and by the
Kubernetes API schemas (``kubernetes-validate --strict``), and saying what the plane
table says (NetworkPolicies, one sidecar per cluster)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lucid.codegen.deployconfig import (
    VALIDATORS,
    DeployFile,
    callers_of,
    files,
    network_policies,
    to_yaml,
)
from lucid.codegen.meshconfig import callable_peers
from lucid.runtime.config import CLUSTERS
from lucid.runtime.contracts import catalog
from lucid.runtime.planes import PlanePolicy

VERSION = "0.1.0"


@pytest.fixture(scope="module")
def generated() -> dict[str, DeployFile]:
    return {f.path: f for f in files(catalog(), VERSION)}


def _compose() -> str:
    path = shutil.which("docker-compose")
    assert path, "docker-compose is missing: scripts/install-tools.sh docker-compose"
    return path


def compose_config(deploy_dir: Path, passphrase: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LUCID_KEY_PASSPHRASE"}
    if passphrase is not None:
        env["LUCID_KEY_PASSPHRASE"] = passphrase
    return subprocess.run(
        [_compose(), "-f", str(deploy_dir / "compose.yaml"), "config", "-q"],
        cwd=deploy_dir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def kubernetes_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    exe = str(tool) if tool.is_file() else shutil.which("kubernetes-validate")
    assert exe, "kubernetes-validate is missing: make venv (a dev dependency)"
    return subprocess.run(
        [exe, "--strict", "--quiet", *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_committed_files_match_the_sources(
    repo_root: Path, generated: dict[str, DeployFile]
) -> None:
    for path, item in generated.items():
        assert (repo_root / path).read_text() == item.text(), f"{path}: run `make gen`"
    committed = {str(p.relative_to(repo_root)) for p in (repo_root / "deploy").rglob("*.yaml")}
    assert committed == set(generated)


def test_the_yaml_writer_reads_back_as_the_same_documents(
    generated: dict[str, DeployFile],
) -> None:
    for item in generated.values():
        assert list(yaml.safe_load_all(item.text())) == item.documents, item.path
    tricky = {
        "yes": "no",
        "on": ["off", "null", "", "a: b", "# not a comment", "$x", "line\nbreak", True, 0o440],
        "nested": [{"a": [], "b": {}}, [1, [2]], {"k": [{"x": 1, "y": "2"}]}],
    }
    assert yaml.safe_load(to_yaml(tricky)) == tricky


def test_docker_compose_accepts_the_compose_file(repo_root: Path) -> None:
    result = compose_config(repo_root / "deploy", "a passphrase")
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_refuses_without_the_sealing_passphrase(repo_root: Path) -> None:
    result = compose_config(repo_root / "deploy", None)
    assert result.returncode != 0
    assert "set the key-sealing passphrase" in result.stderr


def test_docker_compose_refuses_a_broken_file(
    tmp_path: Path, generated: dict[str, DeployFile]
) -> None:
    (compose,) = generated["deploy/compose.yaml"].documents
    unknown_key = copy.deepcopy(compose)
    unknown_key["services"]["gateway"]["sidecars"] = ["envoy"]
    wrong_type = copy.deepcopy(compose)
    wrong_type["services"]["redis"]["command"] = {"redis-server": True}
    unknown_service = copy.deepcopy(compose)
    unknown_service["services"]["gateway-sidecar"]["network_mode"] = "service:gatewey"
    for n, broken in enumerate([unknown_key, wrong_type, unknown_service]):
        case = tmp_path / str(n)
        case.mkdir()
        (case / "compose.yaml").write_text(to_yaml(broken))
        result = compose_config(case, "a passphrase")
        assert result.returncode != 0, (n, result.stdout, result.stderr)


def test_every_cluster_has_its_sidecar_in_its_network(
    repo_root: Path, generated: dict[str, DeployFile]
) -> None:
    (compose,) = generated["deploy/compose.yaml"].documents
    services = compose["services"]
    for cluster in CLUSTERS:
        sidecar = services[f"{cluster}-sidecar"]
        assert sidecar["network_mode"] == f"service:{cluster}"
        source = sidecar["volumes"][0].split(":")[0]
        assert (
            repo_root / "deploy" / source
        ).resolve() == repo_root / f"envoy/sidecar-{cluster}.json"
        aliases = services[cluster]["networks"]["lucid"]["aliases"]
        assert aliases == [f"{cluster}.service.consul"]  # the names the sidecars dial
    validators = [s for s in services if s.startswith("blockchain-validator-")]
    assert len(validators) == VALIDATORS - 1
    for name in validators:
        assert services[name]["network_mode"] == "service:blockchain"
    for mount in services["edge"]["volumes"][:2]:
        assert (repo_root / "deploy" / mount.split(":")[0]).is_file(), mount


def test_kubernetes_accepts_the_manifests(repo_root: Path) -> None:
    paths = sorted((repo_root / "deploy/k8s").glob("*.yaml"))
    result = kubernetes_validate(paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validation_refuses_broken_manifests(
    tmp_path: Path, generated: dict[str, DeployFile]
) -> None:
    service, deployment = generated["deploy/k8s/20-sessions.yaml"].documents
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["sidecar"] = True
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    missing = copy.deepcopy(service)
    del missing["spec"]["ports"][0]["port"]
    for n, broken in enumerate([unknown_field, wrong_type, missing]):
        path = tmp_path / f"broken-{n}.yaml"
        path.write_text(to_yaml(broken))
        result = kubernetes_validate([path])
        assert result.returncode != 0, (n, result.stdout)


def _from_names(policy_doc: dict[str, Any]) -> set[str]:
    (rule,) = policy_doc["spec"]["ingress"]
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]}


def test_network_policies_mirror_the_plane_table() -> None:
    policy, cat = PlanePolicy(), catalog()
    docs = {d["metadata"]["name"]: d for d in network_policies(policy, cat)}
    assert docs["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for cluster in CLUSTERS:
        allowed = _from_names(docs[f"{cluster}-callers"])
        callers = {
            c for c in CLUSTERS if c != cluster and cluster in callable_peers(c, policy, cat)
        }
        assert callers <= allowed
        assert allowed - callers <= {"gateway", "edge"}, (cluster, allowed - callers)
        assert "edge" in allowed
        assert allowed == set(callers_of(cluster, policy, cat))
    # the table's denials: the chain and the payment rail never reach each other
    assert "payments" not in _from_names(docs["blockchain-callers"])
    assert "blockchain" not in _from_names(docs["payments-callers"])


def test_each_cluster_pod_carries_its_sidecar_and_consul_agent(
    generated: dict[str, DeployFile],
) -> None:
    for cluster in CLUSTERS:
        service, workload = generated[f"deploy/k8s/20-{cluster}.yaml"].documents
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": cluster}
        kind = "StatefulSet" if cluster == "blockchain" else "Deployment"
        assert workload["kind"] == kind
        containers = workload["spec"]["template"]["spec"]["containers"]
        names = [c["name"] for c in containers]
        assert names[-2:] == ["envoy", "consul-agent"]
        envoy = containers[-2]
        assert envoy["args"][:2] == ["-c", f"/etc/envoy/sidecar-{cluster}.json"]
        agent_args = containers[-1]["args"]
        assert f"-config-file=/lucid/consul/services/{cluster}.json" in agent_args
        apps = containers[:-2]
        assert len(apps) == (VALIDATORS if cluster == "blockchain" else 1)
        for app in apps:
            env = {e["name"]: e.get("value") for e in app["env"]}
            assert env["LUCID_SIDECAR"] == "true"
            assert env["LUCID_HOST"] == "127.0.0.1"  # only the sidecar is reachable
            assert "LUCID_KEY_PASSPHRASE" in env  # from a Secret, never a file


def test_the_github_workflow_runs_what_ci_runs(repo_root: Path) -> None:
    workflow = yaml.safe_load((repo_root / ".github/workflows/ci.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    jobs = workflow["jobs"]
    runs = [step.get("run") for step in jobs["test"]["steps"]]
    assert "make test" in runs
    assert "make test" in (repo_root / ".ci/run").read_text()
    assert [step.get("run") for step in jobs["bench"]["steps"]].count("make bench") == 1
    assert "workflow_dispatch" in jobs["bench"]["if"]
    assert jobs["test"]["timeout-minutes"] <= 90  # the CI budget of .ci/run


def test_the_validators_share_their_keys_directory(generated: dict[str, DeployFile]) -> None:
    """Validators learn each other's public keys from ``<var>/chain/validators``."""
    (compose,) = generated["deploy/compose.yaml"].documents
    services = compose["services"]
    names = ["blockchain", *(f"blockchain-validator-{n}" for n in range(1, VALIDATORS))]
    keys = {next(v for v in services[n]["volumes"] if v.endswith("/chain")) for n in names}
    assert keys == {"validator-keys:/var/lib/lucid/chain"}
    _, statefulset = generated["deploy/k8s/20-blockchain.yaml"].documents
    for container in statefulset["spec"]["template"]["spec"]["containers"][:VALIDATORS]:
        (var,) = [m for m in container["volumeMounts"] if m["name"] == "var"]
        assert var == {"name": "var", "mountPath": "/var/lib/lucid"}  # one volume, no subPath
