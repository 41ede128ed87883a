"""The generated production configuration: in step with its sources, accepted by
Envoy's v3 API (``envoy-validate``: protojson over go-control-plane's types plus
their field rules) and by a real Consul (``consul validate``, ``consul config
write``), and saying what the plane table says."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lucid.codegen.meshconfig import CERTS, PROTOSET, files, render
from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.contracts import catalog
from lucid.supervisor.localservers import tool_path

VERSION = "0.1.0"


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, Any]]:
    return dict(files(catalog(), VERSION))


def envoy_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_path("envoy-validate"), *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_committed_files_match_the_sources(repo_root: Path, generated: dict[str, Any]) -> None:
    for path, content in generated.items():
        assert (repo_root / path).read_text() == render(content), f"{path}: run `make gen`"
    committed = {
        str(p.relative_to(repo_root))
        for d in ("consul", "envoy")
        for p in (repo_root / d).rglob("*.json")
    }
    assert committed == set(generated)


def test_every_envoy_bootstrap_parses_against_the_v3_api(repo_root: Path) -> None:
    paths = sorted((repo_root / "envoy").glob("*.json"))
    assert len(paths) == len(CLUSTERS) + 1
    result = envoy_validate(paths)
    assert result.returncode == 0, result.stdout + result.stderr


def _mutations(edge: dict[str, Any]) -> list[dict[str, Any]]:
    """Broken copies of the edge bootstrap: an unknown field, a wrong type, a broken rule,
    an unknown typed_config type."""
    found = []
    hcm = ["static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config"]

    def at(config: dict[str, Any], path: list[Any]) -> Any:
        for step in path:
            config = config[step]
        return config

    unknown = copy.deepcopy(edge)
    transcoder = next(
        f for f in at(unknown, hcm)["http_filters"] if f["name"].endswith("grpc_json_transcoder")
    )
    transcoder["typed_config"]["print_options"]["preserve_proto_fieldnames"] = True
    found.append(unknown)
    wrong_type = copy.deepcopy(edge)
    wrong_type["admin"]["address"]["socket_address"]["port_value"] = "fifteen thousand"
    found.append(wrong_type)
    broken_rule = copy.deepcopy(edge)
    broken_rule["static_resources"]["clusters"][0]["connect_timeout"] = "-1s"
    found.append(broken_rule)
    unknown_type = copy.deepcopy(edge)
    at(unknown_type, hcm)["http_filters"][0]["typed_config"]["@type"] = (
        "type.googleapis.com/envoy.extensions.filters.http.nothing.v3.Nothing"
    )
    found.append(unknown_type)
    return found


def test_the_envoy_check_fails_on_unknown_fields_and_wrong_types(
    tmp_path: Path, generated: dict[str, Any]
) -> None:
    for n, broken in enumerate(_mutations(generated["envoy/edge.json"])):
        path = tmp_path / f"broken-{n}.json"
        path.write_text(json.dumps(broken))
        result = envoy_validate([path])
        assert result.returncode == 1, (n, result.stdout)
        assert "ok" not in result.stdout.split(":")[-1], result.stdout


def test_consul_accepts_the_agent_settings_and_service_definitions(
    repo_root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for path in [
        repo_root / "consul/agent.json",
        *sorted((repo_root / "consul/services").glob("*.json")),
    ]:
        (config / path.name).write_text(path.read_text())
    (config / "zz-local.json").write_text(
        json.dumps({"data_dir": str(tmp_path / "data"), "bind_addr": "127.0.0.1"})
    )
    ok = subprocess.run(
        [tool_path("consul"), "validate", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    service = json.loads((config / "payments.json").read_text())
    service["service"]["checks"][0]["grpc_use_tsl"] = True
    (config / "payments.json").write_text(json.dumps(service))
    bad = subprocess.run(
        [tool_path("consul"), "validate", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "grpc_use_tsl" in bad.stdout + bad.stderr


def test_consul_accepts_the_service_defaults_and_intentions(
    repo_root: Path, consul_agent: str
) -> None:
    entries = repo_root / "consul/config-entries"
    ordered = sorted(entries.glob("*-defaults.json")) + sorted(entries.glob("*-intentions.json"))
    for path in ordered:
        result = subprocess.run(
            [tool_path("consul"), "config", "write", f"-http-addr={consul_agent}", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (path.name, result.stdout + result.stderr)
    read = subprocess.run(
        [
            tool_path("consul"),
            "config",
            "read",
            f"-http-addr={consul_agent}",
            "-kind=service-intentions",
            "-name=payments",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    stored = json.loads(read.stdout)
    by_source = {s["Name"]: s for s in stored["Sources"]}
    assert by_source["blockchain"]["Action"] == "deny"
    assert by_source["*"]["Action"] == "deny"


def _sources(intentions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Name"]: s for s in intentions["Sources"]}


def test_intentions_say_what_the_plane_table_says(generated: dict[str, Any]) -> None:
    chain = _sources(generated["consul/config-entries/blockchain-intentions.json"])
    wallet = _sources(generated["consul/config-entries/payments-intentions.json"])
    assert chain["payments"]["Action"] == "deny"
    assert wallet["blockchain"]["Action"] == "deny"
    anchoring = {p["HTTP"].get("PathExact") for p in chain["sessions"]["Permissions"]}
    assert "/lucid.blockchain.v1.AnchoringService/AnchorSession" in anchoring
    assert "/lucid.blockchain.v1.BlockchainService/SubmitTransaction" not in anchoring
    assert chain["sessions"]["Permissions"][-1] == {"Action": "deny", "HTTP": {"PathPrefix": "/"}}
    payouts = {p["HTTP"].get("PathExact") for p in wallet["nodes"]["Permissions"]}
    assert "/lucid.payments.v1.PayoutService/CreatePayout" in payouts
    assert "/lucid.payments.v1.WalletService/CreateWallet" not in payouts
    assert wallet["gateway"]["Action"] == "deny"
    assert (
        _sources(generated["consul/config-entries/auth-intentions.json"])["payments"]["Action"]
        == "allow"
    )
    assert (
        _sources(generated["consul/config-entries/rdp-intentions.json"])["sessions"]["Action"]
        == "allow"
    )
    assert list(chain)[-1] == "*"


def _listener(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    return next(li for li in bootstrap["static_resources"]["listeners"] if li["name"] == name)


def _inbound_policies(bootstrap: dict[str, Any]) -> dict[str, Any]:
    hcm = _listener(bootstrap, "inbound")["filter_chains"][0]["filters"][0]["typed_config"]
    rbac = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.rbac")
    return dict(rbac["typed_config"]["rules"]["policies"])


def test_sidecars_terminate_mtls_and_enforce_the_table_by_spiffe_id(
    generated: dict[str, Any],
) -> None:
    payments = generated["envoy/sidecar-payments.json"]
    inbound = _listener(payments, "inbound")
    tls_context = inbound["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls_context["require_client_certificate"] is True
    policies = _inbound_policies(payments)
    assert "chain-blockchain" not in policies
    assert "ops-gateway" not in policies
    nodes = policies["ops-nodes"]
    assert nodes["principals"] == [
        {"authenticated": {"principal_name": {"exact": "spiffe://lucid.local/ops/nodes"}}}
    ]
    paths = {p["url_path"]["path"]["exact"] for p in nodes["permissions"]}
    assert "/lucid.payments.v1.PayoutService/CreatePayout" in paths
    assert "/lucid.payments.v1.WalletService/CreateWallet" not in paths
    assert _inbound_policies(generated["envoy/sidecar-rdp.json"])["ops-sessions"][
        "permissions"
    ] == [{"any": True}]

    blockchain = generated["envoy/sidecar-blockchain.json"]
    outbound = {li["name"] for li in blockchain["static_resources"]["listeners"]}
    assert "outbound_payments" not in outbound  # no route at all to the wallet plane
    assert "outbound_auth" in outbound
    sessions = generated["envoy/sidecar-sessions.json"]
    peer = next(
        c for c in sessions["static_resources"]["clusters"] if c["name"] == "peer_blockchain"
    )
    upstream = peer["transport_socket"]["typed_config"]
    assert upstream["common_tls_context"]["tls_certificates"][0]["certificate_chain"][
        "filename"
    ].endswith("/sessions.crt")
    san = upstream["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://lucid.local/chain/blockchain"}}
    ]


def test_the_edge_transcodes_grpc_web_verifies_jwts_and_asks_the_gateway(
    generated: dict[str, Any],
) -> None:
    edge = generated["envoy/edge.json"]
    hcm = _listener(edge, "edge")["filter_chains"][0]["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in hcm["http_filters"]}
    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["proto_descriptor"].endswith("lucid.protoset")
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert "lucid.sessions.v1.SessionService" in transcoder["services"]
    assert "envoy.filters.http.grpc_web" in filters
    provider = filters["envoy.filters.http.jwt_authn"]["providers"]["lucid"]
    assert provider["issuer"] == "lucid-auth" and provider["audiences"] == ["lucid"]
    assert provider["remote_jwks"]["http_uri"]["uri"].endswith("/.well-known/jwks.json")
    limit = filters["envoy.filters.http.ratelimit"]["rate_limit_service"]
    assert limit["grpc_service"]["envoy_grpc"]["cluster_name"] == "gateway"
    assert list(filters)[-1] == "envoy.filters.http.router"
    gateway_rbac = _inbound_policies(generated["envoy/sidecar-gateway.json"])
    assert gateway_rbac["edge-rate-limit-service"]["principals"] == [
        {"authenticated": {"principal_name": {"exact": "spiffe://lucid.local/edge/edge"}}}
    ]


def _envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    from lucid.supervisor.envoy import envoy_binary

    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_envoy_accepts_every_bootstrap(
    repo_root: Path, tmp_path: Path, settings: Settings
) -> None:
    """``envoy --mode validate`` on each file of envoy/, with the production certificate
    and protoset paths pointing at this session's files."""
    certs = settings.certs_dir
    tls.ensure_web_certificate(certs, Sealer(settings.key_passphrase))
    for path in sorted((repo_root / "envoy").glob("*.json")):
        text = path.read_text().replace(CERTS, str(certs))
        text = text.replace(PROTOSET, str(repo_root / "gen" / "lucid.protoset"))
        local = tmp_path / path.name
        local.write_text(text)
        result = _envoy_validate(local)
        assert result.returncode == 0, (path.name, result.stdout[-2000:], result.stderr[-2000:])
        assert "OK" in result.stdout + result.stderr


def test_the_real_envoy_refuses_a_broken_bootstrap(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"static_resources": {"clusters": [{"name": "x", "type": 9}]}}))
    assert _envoy_validate(broken).returncode != 0
