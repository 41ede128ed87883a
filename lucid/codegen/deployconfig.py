"""The container deployments of the many-machines column, generated from the same sources
as ``envoy/`` and ``consul/`` (``lucid.codegen.meshconfig``): the plane table, the
contracts and the port map.

- ``deploy/compose.yaml``: docker compose — a MongoDB replica set (three members and a
  one-shot ``rs.initiate``), Redis, a Consul server loaded with ``consul/config-entries``
  (the intentions), one container per cluster with its Envoy sidecar sharing its network
  namespace (``envoy/sidecar-<cluster>.json``), the three validators behind the
  blockchain sidecar, the edge Envoy (``envoy/edge.json``) and node agents. The sidecars
  find their peers at ``<cluster>.service.consul``: compose's DNS answers those names
  (network aliases), so the generated bootstraps run unchanged.
- ``deploy/k8s/*.yaml``: Kubernetes — StatefulSets for the data (MongoDB replica set,
  Redis, Consul servers) and the validators, a Deployment per cluster with its Envoy
  sidecar and a Consul client agent (which registers ``consul/services/<cluster>.json``,
  so Consul DNS answers ``<cluster>.service.consul`` with the pod's sidecar), Services,
  NetworkPolicies that let into a cluster's sidecar exactly the callers the plane table
  lets call it (plus the edge, and the gateway's health probes), and PodDisruptionBudgets.
  Node agents run on the worker machines, outside the cluster (docs/scaling.md).

The files are YAML written by :func:`to_yaml` (block style, every string quoted), so the
package needs no YAML library. ``make gen`` writes them; ``make check-gen`` fails on drift.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lucid.codegen.meshconfig import (
    CERTS,
    EDGE_PORT,
    INBOUND_PORT,
    PROTOSET,
    callable_peers,
)
from lucid.runtime.config import CLUSTERS
from lucid.runtime.contracts import Catalog
from lucid.runtime.planes import PlanePolicy

Json = dict[str, Any]

NAMESPACE = "lucid"
VALIDATORS = 3
"""Validators of the chain (N of the 2/3 rule)."""
MONGO_MEMBERS = 3
CONSUL_SERVERS = 3
NODE_AGENTS = 2
REPLICAS: Mapping[str, int] = {"gateway": 2, "sessions": 2, "auth": 2, "storage": 2}
"""Clusters that run more than one replica (stateless servers over the shared stores)."""
EDGE_REPLICAS = 2

LUCID_IMAGE = "lucid:{version}"
"""Built from ``deploy/Dockerfile`` (``docker buildx build --platform
linux/amd64,linux/arm64``)."""
ENVOY_IMAGE = "envoyproxy/envoy:v1.34-latest"
MONGO_IMAGE = "mongo:7.0"
REDIS_IMAGE = "redis:7.2"
CONSUL_IMAGE = "hashicorp/consul:1.14"
REPLICA_SET = "rs0"
VAR_DIR = "/var/lib/lucid"
BLOBS = f"{VAR_DIR}/blobs"
BLOB_CLUSTERS = frozenset({"storage", "sessions", "rdp"})
"""Clusters that keep files on the blob volume."""
VALIDATOR_KEYS_VOLUME = f"validator-keys:{VAR_DIR}/chain"
"""Where the validators keep their sealed keys and learn each other's public keys
(``lucid.blockchain.config``: ``<var>/chain/validators``), shared by the three."""
EDGE = "edge"
HEALTH_PROBER = "gateway"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
CLUSTER_LABEL = "lucid.io/cluster"


# -- YAML ---------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key, ensure_ascii=False)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{_key(key)}:")
                out.extend(_lines(item, indent + (2 if isinstance(item, dict) else 0)))
            else:
                out.append(f"{pad}{_key(key)}: {_flow(item)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0][indent + 2 :]}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_flow(item)}")
        return out
    return [pad + _scalar(value)]


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(*documents: Any) -> str:
    """YAML documents (``---`` between them), block style, every string double-quoted."""
    return "---\n".join("\n".join(_lines(doc, 0)) + "\n" for doc in documents)


# -- what every cluster container gets --------------------------------------------------------


def _common_env(*, compose: bool) -> dict[str, str]:
    """Settings of every Lucid process (``lucid.runtime.config``)."""
    env = {
        "LUCID_ENVIRONMENT": "production",
        "LUCID_HOST": "127.0.0.1",
        "LUCID_SIDECAR": "true",
        "LUCID_VAR_DIR": VAR_DIR,
        "LUCID_VALIDATORS": str(VALIDATORS),
        "LUCID_MONGODB_DB": "lucid",
    }
    members = ",".join(_mongo_host(i, compose=compose) for i in range(MONGO_MEMBERS))
    env["LUCID_MONGODB_URI"] = f"mongodb://{members}/?replicaSet={REPLICA_SET}"
    env["LUCID_REDIS_URL"] = "redis://redis:6379/0" if compose else "redis://redis-0.redis:6379/0"
    return env


def _mongo_host(index: int, *, compose: bool) -> str:
    return f"mongodb-{index}:27017" if compose else f"mongodb-{index}.mongodb:27017"


def _serve_args(cluster: str, validator: int | None = None) -> list[str]:
    if validator is None:
        return ["serve", cluster]
    return ["serve", "blockchain", "--validator", str(validator)]


def callers_of(cluster: str, policy: PlanePolicy, catalog: Catalog) -> list[str]:
    """Who may reach a cluster's sidecar: the clusters the plane table lets call it, the
    gateway (its aggregated health probes every cluster) and the edge."""
    sources = [
        c for c in CLUSTERS if c != cluster and cluster in callable_peers(c, policy, catalog)
    ]
    if cluster != HEALTH_PROBER and HEALTH_PROBER not in sources:
        sources.append(HEALTH_PROBER)
    return [*sorted(sources, key=CLUSTERS.index), EDGE]


# -- docker compose ------------------------------------------------------------------------


def compose(version: str) -> Json:
    """``deploy/compose.yaml`` (paths relative to ``deploy/``)."""
    image = LUCID_IMAGE.format(version=version)
    certs = f"${{LUCID_CERTS_DIR:-../var/certs}}:{CERTS}:ro"
    env = _common_env(compose=True) | {
        "LUCID_KEY_PASSPHRASE": "${LUCID_KEY_PASSPHRASE:?set the key-sealing passphrase}",
        "LUCID_REGISTRY": "static",
    }
    services: Json = {}
    for i in range(MONGO_MEMBERS):
        services[f"mongodb-{i}"] = {
            "image": MONGO_IMAGE,
            "command": ["mongod", "--replSet", REPLICA_SET, "--bind_ip_all"],
            "volumes": [f"mongodb-{i}:/data/db"],
            "networks": ["lucid"],
            "restart": "unless-stopped",
        }
    members = ", ".join(
        f"{{_id: {i}, host: '{_mongo_host(i, compose=True)}'}}" for i in range(MONGO_MEMBERS)
    )
    services["mongodb-init"] = {
        "image": MONGO_IMAGE,
        "depends_on": [f"mongodb-{i}" for i in range(MONGO_MEMBERS)],
        "command": [
            "mongosh",
            "--host",
            "mongodb-0:27017",
            "--eval",
            f"try {{ rs.status() }} catch (e) {{ rs.initiate({{_id: '{REPLICA_SET}', "
            f"members: [{members}]}}) }}",
        ],
        "networks": ["lucid"],
        "restart": "on-failure",
    }
    services["redis"] = {
        "image": REDIS_IMAGE,
        "command": ["redis-server", "--appendonly", "yes"],
        "volumes": ["redis:/data"],
        "networks": ["lucid"],
        "restart": "unless-stopped",
    }
    services["consul"] = {
        "image": CONSUL_IMAGE,
        "command": ["agent", "-server", "-bootstrap-expect=1", "-ui", "-client=0.0.0.0"],
        "volumes": ["consul:/consul/data"],
        "networks": ["lucid"],
        "restart": "unless-stopped",
    }
    services["consul-config"] = {
        "image": CONSUL_IMAGE,
        "depends_on": ["consul"],
        "entrypoint": ["/bin/sh", "-c"],
        "command": [
            "for f in /lucid/config-entries/*.json; do "
            'consul config write -http-addr=consul:8500 "$$f" || exit 1; done'
        ],
        "volumes": ["../consul/config-entries:/lucid/config-entries:ro"],
        "networks": ["lucid"],
        "restart": "on-failure",
    }
    stores = ["mongodb-init", "redis"]
    for cluster in CLUSTERS:
        volumes = [certs]
        if cluster in BLOB_CLUSTERS:
            volumes.append(f"blobs:{BLOBS}")
        app: Json = {
            "image": image,
            "build": {"context": "..", "dockerfile": "deploy/Dockerfile"},
            "command": _serve_args(cluster, 0 if cluster == "blockchain" else None),
            "environment": dict(env),
            "volumes": volumes,
            "depends_on": stores,
            "networks": {"lucid": {"aliases": [f"{cluster}.service.consul"]}},
            "restart": "unless-stopped",
        }
        if cluster == "blockchain":
            app["volumes"] = [*volumes, VALIDATOR_KEYS_VOLUME]
        services[cluster] = app
        if cluster == "blockchain":
            for n in range(1, VALIDATORS):
                services[f"blockchain-validator-{n}"] = {
                    "image": image,
                    "command": _serve_args(cluster, n),
                    "environment": dict(env),
                    "volumes": [certs, VALIDATOR_KEYS_VOLUME],
                    "depends_on": [*stores, "blockchain"],
                    "network_mode": "service:blockchain",
                    "restart": "unless-stopped",
                }
        services[f"{cluster}-sidecar"] = {
            "image": ENVOY_IMAGE,
            "command": ["envoy", "-c", "/etc/envoy/sidecar.json", "--service-cluster", cluster],
            "volumes": [f"../envoy/sidecar-{cluster}.json:/etc/envoy/sidecar.json:ro", certs],
            "depends_on": [cluster],
            "network_mode": f"service:{cluster}",
            "restart": "unless-stopped",
        }
    services[EDGE] = {
        "image": ENVOY_IMAGE,
        "command": ["envoy", "-c", "/etc/envoy/edge.json"],
        "volumes": [
            "../envoy/edge.json:/etc/envoy/edge.json:ro",
            f"../gen/lucid.protoset:{PROTOSET}:ro",
            certs,
        ],
        "ports": [f"{EDGE_PORT}:{EDGE_PORT}"],
        "depends_on": [f"{c}-sidecar" for c in CLUSTERS],
        "networks": ["lucid"],
        "restart": "unless-stopped",
    }
    for n in range(1, NODE_AGENTS + 1):
        # The agent dials the nodes server at LUCID_HOST with the operator certificate and
        # binds its probe endpoint there too, so here it shares the nodes container's
        # network (loopback, as on one machine).
        services[f"node-agent-{n}"] = {
            "image": image,
            "command": [
                "node-agent",
                "--name",
                f"node-{n}",
                "--token-file",
                "/run/secrets/node-operator-token",
                "--state-dir",
                "/var/lib/lucid/node-agent",
            ],
            "environment": dict(env),
            "volumes": [certs, f"node-agent-{n}:/var/lib/lucid/node-agent"],
            "secrets": ["node-operator-token"],
            "depends_on": ["nodes"],
            "network_mode": "service:nodes",
            "restart": "unless-stopped",
        }
    volume_names = [
        *(f"mongodb-{i}" for i in range(MONGO_MEMBERS)),
        "redis",
        "consul",
        "blobs",
        "validator-keys",
        *(f"node-agent-{n}" for n in range(1, NODE_AGENTS + 1)),
    ]
    return {
        "version": "3.8",
        "services": services,
        "networks": {"lucid": {"driver": "bridge"}},
        "volumes": {name: {} for name in volume_names},
        "secrets": {
            "node-operator-token": {
                "file": "${LUCID_NODE_TOKEN_FILE:-../var/secrets/node-operator-token}"
            }
        },
    }


# -- Kubernetes ----------------------------------------------------------------------------


def _meta(name: str, component: str, **labels: str) -> Json:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {PART_OF: "lucid", COMPONENT: component, **labels},
    }


def _selector(name: str) -> Json:
    return {"app.kubernetes.io/name": name}


def _labels(name: str, component: str, cluster: str | None = None) -> Json:
    labels = {"app.kubernetes.io/name": name, PART_OF: "lucid", COMPONENT: component}
    if cluster is not None:
        labels[CLUSTER_LABEL] = cluster
    return labels


def _env_list(env: Mapping[str, str]) -> list[Json]:
    return [{"name": k, "value": v} for k, v in env.items()]


def _passphrase() -> Json:
    return {
        "name": "LUCID_KEY_PASSPHRASE",
        "valueFrom": {"secretKeyRef": {"name": "lucid-key-passphrase", "key": "passphrase"}},
    }


def _certs_mount() -> Json:
    return {"name": "certs", "mountPath": CERTS, "readOnly": True}


def _certs_volume() -> Json:
    return {"name": "certs", "secret": {"secretName": "lucid-certs", "defaultMode": 0o440}}


def _probe_tcp(port: int) -> Json:
    return {"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 3}


def _security() -> Json:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(cpu: str, memory: str) -> Json:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def _app_container(name: str, args: list[str], cluster: str, version: str) -> Json:
    mounts = [_certs_mount(), {"name": "var", "mountPath": VAR_DIR}]
    if cluster in BLOB_CLUSTERS:
        mounts.append({"name": "blobs", "mountPath": BLOBS})
    return {
        "name": name,
        "image": LUCID_IMAGE.format(version=version),
        "args": args,
        "env": [
            *_env_list(_common_env(compose=False) | {"LUCID_REGISTRY": "static"}),
            _passphrase(),
        ],
        "volumeMounts": mounts,
        "securityContext": _security(),
        "resources": _resources("250m", "512Mi"),
    }


def _sidecar_container(cluster: str) -> Json:
    return {
        "name": "envoy",
        "image": ENVOY_IMAGE,
        "args": ["-c", f"/etc/envoy/sidecar-{cluster}.json", "--service-cluster", cluster],
        "ports": [
            {"name": "mtls", "containerPort": INBOUND_PORT},
        ],
        "readinessProbe": _probe_tcp(INBOUND_PORT),
        "volumeMounts": [_certs_mount(), {"name": "envoy", "mountPath": "/etc/envoy"}],
        "securityContext": _security(),
        "resources": _resources("100m", "128Mi"),
    }


def _consul_agent_container(cluster: str) -> Json:
    """A Consul client agent in the pod: registers the cluster's service definition (its
    sidecar at the pod's address, its gRPC health check over mTLS on loopback)."""
    return {
        "name": "consul-agent",
        "image": CONSUL_IMAGE,
        "args": [
            "agent",
            "-data-dir=/consul/data",
            "-advertise=$(POD_IP)",
            "-retry-join=consul-0.consul",
            "-retry-join=consul-1.consul",
            "-retry-join=consul-2.consul",
            "-config-file=/lucid/consul/agent.json",
            f"-config-file=/lucid/consul/services/{cluster}.json",
        ],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "volumeMounts": [
            _certs_mount(),
            {"name": "consul-config", "mountPath": "/lucid/consul"},
            {"name": "consul-data", "mountPath": "/consul/data"},
        ],
        "resources": _resources("50m", "96Mi"),
    }


def _pod_volumes(cluster: str, *, var_claim: bool) -> list[Json]:
    volumes: list[Json] = [
        _certs_volume(),
        {"name": "envoy", "configMap": {"name": "lucid-envoy"}},
        {
            "name": "consul-config",
            "configMap": {
                "name": "lucid-consul",
                "items": [
                    {"key": "agent.json", "path": "agent.json"},
                    {"key": f"{cluster}.json", "path": f"services/{cluster}.json"},
                ],
            },
        },
        {"name": "consul-data", "emptyDir": {}},
    ]
    if not var_claim:
        volumes.append({"name": "var", "emptyDir": {}})
    if cluster in BLOB_CLUSTERS:
        volumes.append({"name": "blobs", "persistentVolumeClaim": {"claimName": "lucid-blobs"}})
    return volumes


def _pod_spec(cluster: str, containers: list[Json], *, var_claim: bool = False) -> Json:
    return {
        "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [*containers, _sidecar_container(cluster), _consul_agent_container(cluster)],
        "volumes": _pod_volumes(cluster, var_claim=var_claim),
    }


def _deployment(cluster: str, version: str) -> Json:
    replicas = REPLICAS.get(cluster, 1)
    labels = _labels(cluster, "server", cluster)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cluster, "server", **{CLUSTER_LABEL: cluster}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(cluster)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(
                    cluster, [_app_container("app", _serve_args(cluster), cluster, version)]
                ),
            },
        },
    }


def _validators(version: str) -> Json:
    """The validators: one pod whose containers reach each other on loopback (the port map's
    validator ports, as on one machine) and share its volume, where each keeps its sealed
    key and finds the others' public keys (``<var>/chain/validators``)."""
    cluster = "blockchain"
    containers = [
        _app_container(f"validator-{n}", _serve_args(cluster, n), cluster, version)
        for n in range(VALIDATORS)
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(cluster, "validators", **{CLUSTER_LABEL: cluster}),
        "spec": {
            "serviceName": cluster,
            "replicas": 1,
            "selector": {"matchLabels": _selector(cluster)},
            "template": {
                "metadata": {"labels": _labels(cluster, "validators", cluster)},
                "spec": _pod_spec(cluster, containers, var_claim=True),
            },
            "volumeClaimTemplates": [_claim("var", "5Gi")],
        },
    }


def _claim(name: str, size: str, mode: str = "ReadWriteOnce") -> Json:
    return {
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
    }


def _service(name: str, component: str, ports: list[tuple[str, int]], *, headless: bool) -> Json:
    spec: Json = {
        "selector": _selector(name),
        "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
    }
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component),
        "spec": spec,
    }


def _mongodb() -> list[Json]:
    members = ", ".join(
        f"{{_id: {i}, host: '{_mongo_host(i, compose=False)}'}}" for i in range(MONGO_MEMBERS)
    )
    return [
        _service("mongodb", "data", [("mongodb", 27017)], headless=True),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("mongodb", "data"),
            "spec": {
                "serviceName": "mongodb",
                "replicas": MONGO_MEMBERS,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": _selector("mongodb")},
                "template": {
                    "metadata": {"labels": _labels("mongodb", "data")},
                    "spec": {
                        "containers": [
                            {
                                "name": "mongod",
                                "image": MONGO_IMAGE,
                                "args": ["--replSet", REPLICA_SET, "--bind_ip_all"],
                                "ports": [{"name": "mongodb", "containerPort": 27017}],
                                "readinessProbe": _probe_tcp(27017),
                                "volumeMounts": [{"name": "data", "mountPath": "/data/db"}],
                                "resources": _resources("500m", "1Gi"),
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [_claim("data", "20Gi")],
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta("mongodb-init", "data"),
            "spec": {
                "backoffLimit": 20,
                "template": {
                    "metadata": {"labels": _labels("mongodb-init", "data")},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [
                            {
                                "name": "initiate",
                                "image": MONGO_IMAGE,
                                "command": [
                                    "mongosh",
                                    "--host",
                                    _mongo_host(0, compose=False),
                                    "--eval",
                                    f"try {{ rs.status() }} catch (e) {{ rs.initiate("
                                    f"{{_id: '{REPLICA_SET}', members: [{members}]}}) }}",
                                ],
                            }
                        ],
                    },
                },
            },
        },
    ]


def _redis() -> list[Json]:
    return [
        _service("redis", "data", [("redis", 6379)], headless=True),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("redis", "data"),
            "spec": {
                "serviceName": "redis",
                "replicas": 1,
                "selector": {"matchLabels": _selector("redis")},
                "template": {
                    "metadata": {"labels": _labels("redis", "data")},
                    "spec": {
                        "containers": [
                            {
                                "name": "redis",
                                "image": REDIS_IMAGE,
                                "args": ["redis-server", "--appendonly", "yes"],
                                "ports": [{"name": "redis", "containerPort": 6379}],
                                "readinessProbe": _probe_tcp(6379),
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                "resources": _resources("250m", "512Mi"),
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [_claim("data", "5Gi")],
            },
        },
    ]


CONSUL_PORTS = (("http", 8500), ("dns", 8600), ("server", 8300), ("serf-lan", 8301))


def _consul() -> list[Json]:
    return [
        _service("consul", "discovery", list(CONSUL_PORTS), headless=True),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("consul", "discovery"),
            "spec": {
                "serviceName": "consul",
                "replicas": CONSUL_SERVERS,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": _selector("consul")},
                "template": {
                    "metadata": {"labels": _labels("consul", "discovery")},
                    "spec": {
                        "containers": [
                            {
                                "name": "consul",
                                "image": CONSUL_IMAGE,
                                "args": [
                                    "agent",
                                    "-server",
                                    f"-bootstrap-expect={CONSUL_SERVERS}",
                                    "-data-dir=/consul/data",
                                    "-client=0.0.0.0",
                                    "-advertise=$(POD_IP)",
                                    *(
                                        f"-retry-join=consul-{i}.consul"
                                        for i in range(CONSUL_SERVERS)
                                    ),
                                ],
                                "env": [
                                    {
                                        "name": "POD_IP",
                                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                    }
                                ],
                                "ports": [{"name": n, "containerPort": p} for n, p in CONSUL_PORTS],
                                "readinessProbe": _probe_tcp(8500),
                                "volumeMounts": [{"name": "data", "mountPath": "/consul/data"}],
                                "resources": _resources("100m", "256Mi"),
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [_claim("data", "1Gi")],
            },
        },
    ]


def _edge() -> list[Json]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(EDGE, "edge"),
            "spec": {
                "type": "LoadBalancer",
                "selector": _selector(EDGE),
                "ports": [{"name": "https", "port": 443, "targetPort": EDGE_PORT}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(EDGE, "edge"),
            "spec": {
                "replicas": EDGE_REPLICAS,
                "selector": {"matchLabels": _selector(EDGE)},
                "template": {
                    "metadata": {"labels": _labels(EDGE, "edge")},
                    "spec": {
                        "containers": [
                            {
                                "name": "envoy",
                                "image": ENVOY_IMAGE,
                                "args": ["-c", "/etc/envoy/edge.json"],
                                "ports": [{"name": "https", "containerPort": EDGE_PORT}],
                                "readinessProbe": _probe_tcp(EDGE_PORT),
                                "volumeMounts": [
                                    _certs_mount(),
                                    {"name": "envoy", "mountPath": "/etc/envoy"},
                                    {
                                        "name": "protoset",
                                        "mountPath": PROTOSET,
                                        "subPath": "lucid.protoset",
                                    },
                                ],
                                "securityContext": _security(),
                                "resources": _resources("250m", "256Mi"),
                            }
                        ],
                        "volumes": [
                            _certs_volume(),
                            {"name": "envoy", "configMap": {"name": "lucid-envoy"}},
                            {"name": "protoset", "configMap": {"name": "lucid-protoset"}},
                        ],
                    },
                },
            },
        },
    ]


def _pod_selector(name: str) -> Json:
    return {"podSelector": {"matchLabels": _selector(name)}}


def network_policies(policy: PlanePolicy, catalog: Catalog) -> list[Json]:
    """Default deny into the namespace; then, per cluster, its sidecar's mTLS port open to
    exactly :func:`callers_of` it; the stores open to the servers; the edge to anyone."""
    policies: list[Json] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("default-deny", "policy"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
    ]
    for cluster in CLUSTERS:
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(f"{cluster}-callers", "policy", **{CLUSTER_LABEL: cluster}),
                "spec": {
                    "podSelector": {"matchLabels": _selector(cluster)},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                _pod_selector(c) for c in callers_of(cluster, policy, catalog)
                            ],
                            "ports": [{"protocol": "TCP", "port": INBOUND_PORT}],
                        }
                    ],
                },
            }
        )
    servers = {"podSelector": {"matchLabels": {PART_OF: "lucid", COMPONENT: "server"}}}
    validators = {"podSelector": {"matchLabels": {PART_OF: "lucid", COMPONENT: "validators"}}}
    for store, port in (("mongodb", 27017), ("redis", 6379)):
        peers = [servers, validators]
        if store == "mongodb":
            peers.append(_pod_selector("mongodb"))  # replication between members
            peers.append(_pod_selector("mongodb-init"))
        policies.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(f"{store}-clients", "policy"),
                "spec": {
                    "podSelector": {"matchLabels": _selector(store)},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}],
                },
            }
        )
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("consul-members", "policy"),
            "spec": {
                "podSelector": {"matchLabels": _selector("consul")},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {PART_OF: "lucid"}}}],
                        "ports": [{"protocol": "TCP", "port": p} for _, p in CONSUL_PORTS]
                        + [{"protocol": "UDP", "port": p} for _, p in CONSUL_PORTS if p != 8300],
                    }
                ],
            },
        }
    )
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("edge-public", "policy"),
            "spec": {
                "podSelector": {"matchLabels": _selector(EDGE)},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"protocol": "TCP", "port": EDGE_PORT}]}],
            },
        }
    )
    return policies


def _pdb(name: str, component: str, *, min_available: int) -> Json:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, component),
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": _selector(name)}},
    }


def disruption_budgets() -> list[Json]:
    """Voluntary evictions keep a quorum of the replica set and of Consul, and one replica
    of every cluster that runs several."""
    budgets = [
        _pdb("mongodb", "data", min_available=MONGO_MEMBERS // 2 + 1),
        _pdb("consul", "discovery", min_available=CONSUL_SERVERS // 2 + 1),
        _pdb(EDGE, "edge", min_available=EDGE_REPLICAS - 1),
    ]
    budgets += [
        _pdb(c, "server", min_available=n - 1) for c, n in sorted(REPLICAS.items()) if n > 1
    ]
    return budgets


def kubernetes(
    version: str, policy: PlanePolicy, catalog: Catalog
) -> Iterator[tuple[str, list[Json]]]:
    """Each file of ``deploy/k8s/`` and its documents."""
    yield (
        "00-namespace.yaml",
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": {PART_OF: "lucid"}},
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": _meta("lucid-blobs", "data"),
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "100Gi"}},
                },
            },
        ],
    )
    yield "10-mongodb.yaml", _mongodb()
    yield "11-redis.yaml", _redis()
    yield "12-consul.yaml", _consul()
    for cluster in CLUSTERS:
        service = _service(cluster, "server", [("mtls", INBOUND_PORT)], headless=False)
        service["metadata"]["labels"][CLUSTER_LABEL] = cluster
        workload = (
            _validators(version) if cluster == "blockchain" else _deployment(cluster, version)
        )
        yield f"20-{cluster}.yaml", [service, workload]
    yield "30-edge.yaml", _edge()
    yield "50-network-policies.yaml", network_policies(policy, catalog)
    yield "60-disruption-budgets.yaml", disruption_budgets()


# -- all files --------------------------------------------------------------------------------

HEADER = "# Generated by `make gen` (lucid/codegen/deployconfig.py); do not edit.\n"


@dataclass(frozen=True)
class DeployFile:
    """One generated file of ``deploy/``: its path and documents."""

    path: str
    documents: list[Json]

    def text(self) -> str:
        """The file's text (stable: diffs show real changes)."""
        return HEADER + to_yaml(*self.documents)


def files(catalog: Catalog, version: str, policy: PlanePolicy | None = None) -> list[DeployFile]:
    """Every generated file of ``deploy/``."""
    policy = policy or PlanePolicy()
    out = [DeployFile("deploy/compose.yaml", [compose(version)])]
    out += [
        DeployFile(f"deploy/k8s/{name}", docs)
        for name, docs in kubernetes(version, policy, catalog)
    ]
    return out


def write(root: Path, catalog: Catalog, version: str) -> list[str]:
    """Writes every file under ``root``; returns their paths."""
    written = []
    for item in files(catalog, version):
        target = root / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.text())
        written.append(item.path)
    return written


def main(argv: list[str] | None = None) -> None:
    """``python -m lucid.codegen.deployconfig PROTOSET OUT_DIR VERSION`` (used by gen.sh)."""
    protoset, out, version = (argv or sys.argv[1:])[:3]
    for path in write(Path(out), Catalog.from_file(Path(protoset)), version):
        print(path)


if __name__ == "__main__":
    main()
