"""The Envoy sidecars running on this machine, as the mesh reaches them: each one's site
file (``var/envoy/sidecar-<cluster>.site.json``, written by ``lucid up --sidecars``:
its admin endpoint, the plane table's listeners, the watched listener file and the
access log), its admin endpoint (``/ready``, ``/stats``, ``/config_dump``) and the
listener file it reloads when a new one is moved into place (LDS over
``path_config_source``; in production the mesh controller's xDS plays this part).
Nothing here decides anything: reads and writes only.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ADMIN_TIMEOUT_S = 2.0
SITE_SUFFIX = ".site.json"


class ProxyUnreachableError(Exception):
    """The sidecar's admin endpoint does not answer (or answers an error)."""


@dataclass(frozen=True)
class ProxySite:
    """Where one cluster's sidecar is."""

    cluster: str
    admin_url: str
    plane_listeners: Path
    listeners: Path
    access_log: Path


@dataclass(frozen=True)
class AdminReply:
    """An answer of the admin endpoint."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def _site(path: Path) -> ProxySite:
    doc = json.loads(path.read_text())
    return ProxySite(
        cluster=doc["cluster"],
        admin_url=doc["admin_url"],
        plane_listeners=Path(doc["plane_listeners"]),
        listeners=Path(doc["listeners"]),
        access_log=Path(doc["access_log"]),
    )


def _get(url: str) -> AdminReply:
    try:
        with urllib.request.urlopen(url, timeout=ADMIN_TIMEOUT_S) as reply:  # noqa: S310
            return AdminReply(int(reply.status), reply.read())
    except urllib.error.HTTPError as error:
        return AdminReply(error.code, error.read())
    except (urllib.error.URLError, OSError) as error:
        raise ProxyUnreachableError(f"{url}: {error}") from None


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open() as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line being written
            if isinstance(entry, dict):
                yield entry


class ProxyStore:
    """The sidecars whose site files are in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def site(self, cluster: str) -> ProxySite | None:
        """The site of ``cluster``'s sidecar; ``None`` when it runs without one."""
        path = self.directory / f"sidecar-{cluster}{SITE_SUFFIX}"
        return _site(path) if path.is_file() else None

    def sites(self) -> list[ProxySite]:
        """Every sidecar of this machine."""
        return [_site(p) for p in sorted(self.directory.glob(f"sidecar-*{SITE_SUFFIX}"))]

    @staticmethod
    def plane_listeners(site: ProxySite) -> list[dict[str, Any]]:
        """The listeners the plane table gives the sidecar (before any configuration)."""
        found: list[dict[str, Any]] = json.loads(site.plane_listeners.read_text())
        return found

    @staticmethod
    def write_listeners(site: ProxySite, listeners: list[dict[str, Any]], version: str) -> None:
        """Moves the listeners into place as an LDS response of ``version``; Envoy
        watches the move and swaps its listeners."""
        response = {
            "version_info": version,
            "resources": [{"@type": LISTENER_TYPE, **listener} for listener in listeners],
        }
        staged = site.listeners.with_name(f".{site.listeners.name}.staged")
        staged.write_text(json.dumps(response, indent=1))
        staged.replace(site.listeners)

    @staticmethod
    def current_listeners(site: ProxySite) -> tuple[list[dict[str, Any]], str]:
        """The listener file as it is now, and its version."""
        doc = json.loads(site.listeners.read_text())
        listeners = [
            {k: v for k, v in resource.items() if k != "@type"} for resource in doc["resources"]
        ]
        return listeners, str(doc.get("version_info") or "0")

    @staticmethod
    async def admin(site: ProxySite, path: str) -> AdminReply:
        """GET ``path`` of the sidecar's admin endpoint."""
        return await asyncio.to_thread(_get, f"{site.admin_url}{path}")

    @staticmethod
    async def access_log(site: ProxySite) -> list[dict[str, Any]]:
        """The access log's entries (JSON lines), oldest first; none without a log."""
        return await asyncio.to_thread(lambda: list(_entries(site.access_log)))
