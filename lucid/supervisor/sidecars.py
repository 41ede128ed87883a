"""Sidecar mode on one machine (``lucid up --sidecars``): every cluster behind its own
Envoy, exactly as ``envoy/sidecar-<cluster>.json`` describe production, with loopback
ports in place of Consul DNS and :15001.

For cluster ``c``: its sidecar's mTLS listener takes ``c``'s port of the port map (what
the other clusters, the edge and the operator dial); ``c``'s own server moves to a free
loopback port behind it (``LUCID_SIDECAR=true``: it trusts the caller named in
``x-forwarded-client-cert`` only on connections carrying its own certificate, i.e. from
its sidecar); and each peer the plane table lets ``c`` call gets an outbound listener on
a free loopback port, which ``c``'s process knows as that peer's port.

The listeners (inbound mTLS + RBAC, outbound) reach Envoy from a watched file (LDS over
``path_config_source``, the one-machine stand-in for the mesh controller's xDS), the
clusters stay in the bootstrap. Next to it the plane table's listeners
(``sidecar-<c>.listeners.json``) and ``sidecar-<c>.site.json``, which tells the mesh
cluster where the sidecar's admin endpoint and listener file are: ``ConfigureSidecar``
renders the stored configuration onto the plane table's listeners and moves the result
into place; Envoy swaps its listeners without a restart (``lucid.mesh.sidecars``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lucid.codegen.meshconfig import SidecarSite, health_only_peers, reachable_peers, sidecar
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.planes import default_policy
from lucid.supervisor.envoy import running_envoy
from lucid.supervisor.localservers import free_port


@dataclass(frozen=True)
class SidecarLayout:
    """The loopback ports of sidecar mode."""

    public: Mapping[str, int]
    """Cluster → its sidecar's mTLS port (the port map everyone else uses)."""
    app: Mapping[str, int]
    """Cluster → its own server's port, behind the sidecar."""
    admin: Mapping[str, int]
    outbound: Mapping[str, Mapping[str, int]]
    """Cluster → peer → the loopback port of the cluster's outbound listener to it."""
    health_only: Mapping[str, frozenset[str]]
    """Cluster → the peers it may reach for health only."""

    @classmethod
    def allocate(cls, settings: Settings, clusters: tuple[str, ...] = CLUSTERS) -> SidecarLayout:
        """Free ports for ``clusters`` (the public ones stay the settings' port map)."""
        contracts, policy = catalog(), default_policy()
        taken = set(settings.ports.values()) | {settings.edge_port}

        def port() -> int:
            # not a port of the settings' map (those did not come from this free_port call)
            found = free_port()
            while found in taken:
                found = free_port()
            taken.add(found)
            return found

        return cls(
            public={c: settings.port(c) for c in CLUSTERS},
            app={c: port() for c in clusters},
            admin={c: port() for c in clusters},
            outbound={
                c: {peer: port() for peer in reachable_peers(c, policy, contracts)}
                for c in clusters
            },
            health_only={c: health_only_peers(c, policy, contracts) for c in clusters},
        )

    def site(self, settings: Settings, cluster: str) -> SidecarSite:
        """Where ``cluster``'s sidecar listens and what it reaches."""
        return SidecarSite(
            certs=str(settings.certs_dir.resolve()),
            inbound=(settings.host, self.public[cluster]),
            app_port=self.app[cluster],
            admin_port=self.admin[cluster],
            outbound={
                peer: (port, settings.host, self.public[peer])
                for peer, port in self.outbound[cluster].items()
            },
            dns=False,
            health_only=self.health_only[cluster],
        )

    def cluster_settings(self, settings: Settings, cluster: str) -> Settings:
        """The settings of ``cluster``'s own server: its port behind the sidecar, and
        its outbound listeners as the peers' ports."""
        ports = {**settings.ports, **self.outbound[cluster], cluster: self.app[cluster]}
        return settings.replace(ports=ports, sidecar=True)

    def cluster_env(self, cluster: str) -> dict[str, str]:
        """``cluster_settings`` as the environment of a ``lucid serve`` process."""
        ports = {**self.outbound[cluster], cluster: self.app[cluster]}
        env = {f"LUCID_PORT_{c.upper()}": str(p) for c, p in ports.items()}
        env["LUCID_SIDECAR"] = "true"
        return env

    def write(self, settings: Settings, cluster: str, directory: Path) -> Path:
        """Writes ``cluster``'s sidecar bootstrap, its listener files and its site file;
        returns the bootstrap's path."""
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        config = sidecar(cluster, default_policy(), catalog(), self.site(settings, cluster))
        listeners = config["static_resources"].pop("listeners")
        base = directory / f"sidecar-{cluster}.listeners.json"
        base.write_text(json.dumps(listeners, indent=1))
        lds = directory / f"sidecar-{cluster}.lds.json"
        write_listeners(lds, listeners, version=0)
        config["dynamic_resources"] = {
            "lds_config": {"path_config_source": {"path": str(lds)}, "resource_api_version": "V3"}
        }
        path = directory / f"sidecar-{cluster}.json"
        path.write_text(json.dumps(config, indent=1))
        site = {
            "cluster": cluster,
            "admin_url": f"http://127.0.0.1:{self.admin[cluster]}",
            "plane_listeners": str(base),
            "listeners": str(lds),
            "access_log": str(directory / f"sidecar-{cluster}.access.log"),
        }
        (directory / f"sidecar-{cluster}.site.json").write_text(json.dumps(site, indent=1))
        return path


LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def forget_sidecars(directory: Path) -> None:
    """Removes the site files of sidecars (a run without them must not look like one)."""
    for site in directory.glob("sidecar-*.site.json"):
        site.unlink(missing_ok=True)


def write_listeners(path: Path, listeners: list[dict[str, object]], *, version: int) -> None:
    """Listeners as an LDS discovery response, moved into place (Envoy watches the move)."""
    response = {
        "version_info": str(version),
        "resources": [{"@type": LISTENER_TYPE, **listener} for listener in listeners],
    }
    staged = path.with_name(f".{path.name}.staged")
    staged.write_text(json.dumps(response, indent=1))
    staged.replace(path)


@contextlib.asynccontextmanager
async def running_sidecars(
    settings: Settings, layout: SidecarLayout, clusters: tuple[str, ...]
) -> AsyncIterator[None]:
    """The sidecars of ``clusters`` as child processes until the block ends."""
    directory = settings.var_dir / "envoy"
    async with contextlib.AsyncExitStack() as stack:
        for cluster in clusters:
            bootstrap = layout.write(settings, cluster, directory)
            log = directory / f"sidecar-{cluster}.log"
            await stack.enter_async_context(running_envoy(bootstrap, layout.admin[cluster], log))
        yield
