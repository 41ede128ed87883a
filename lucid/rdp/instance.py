"""The files of one RDP server instance: its directories, ``xrdp.ini`` and TLS
certificate, and the shared session manager's ``sesman.ini``.

Layout under the instances directory: ``servers/<id>/{config,logs,sessions}``;
``config`` holds ``xrdp.ini``, ``cert.pem`` and ``key.pem`` (issued by the dev CA).
The listener binds loopback only (``port=tcp://.:<port>``; a bare port would bind
every address). xrdp asks the one session manager on the port of the fixed
``/etc/xrdp/sesman.ini`` (3350), so all instances share it (``sesman.py``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lucid.lib.sealing import Sealer
from lucid.runtime import tls

XRDP_INI = """[Globals]
ini_version=1
fork=true
port=tcp://.:{port}
tcp_nodelay=true
tcp_keepalive=true
security_layer=negotiate
crypt_level={crypt_level}
certificate={cert}
key_file={key}
ssl_protocols={ssl_protocols}
tls_ciphers=HIGH:!aNULL:!MD5
autorun=Xvnc
allow_channels=true
allow_multimon=false
bitmap_cache={bitmap_cache}
bitmap_compression={compression}
bulk_compression={compression}
max_bpp={max_bpp}
new_cursors=true
use_fastpath=both
require_credentials=true

[Logging]
LogFile={log}
LogLevel=INFO
EnableSyslog=false

[Channels]
rdpdr={drives}
rdpsnd={audio}
drdynvc=true
cliprdr={clipboard}
rail=true
xrdpvr=false

[Xvnc]
name=Xvnc
lib=libvnc.so
username=ask
password=ask
ip=127.0.0.1
port=-1
"""


@dataclass(frozen=True)
class InstanceFiles:
    """Where one server's files are."""

    root: Path

    @property
    def config_dir(self) -> Path:
        """``xrdp.ini`` and the TLS certificate."""
        return self.root / "config"

    @property
    def log_dir(self) -> Path:
        """``xrdp.log`` and the process output."""
        return self.root / "logs"

    @property
    def session_dir(self) -> Path:
        """Per-session working files."""
        return self.root / "sessions"

    @property
    def xrdp_ini(self) -> Path:
        """The listener's configuration."""
        return self.config_dir / "xrdp.ini"

    @property
    def output_log(self) -> Path:
        """The listener's stdout and stderr."""
        return self.log_dir / "xrdp.out"

    @classmethod
    def of(cls, instances_dir: Path, server_id: str) -> InstanceFiles:
        """The files of a server."""
        return cls(instances_dir / "servers" / server_id)

    def exists(self) -> bool:
        """Whether the instance directory exists."""
        return self.root.exists()

    def write(
        self,
        *,
        port: int,
        max_bpp: int,
        audio: bool,
        clipboard: bool,
        drives: bool,
        crypt_level: str,
        tls_protocols: str,
        bitmap_cache: bool,
        compression: bool,
        certs_dir: Path,
        sealer: Sealer,
    ) -> None:
        """Creates the directories, the certificate (once) and ``xrdp.ini``."""
        for directory in (self.config_dir, self.log_dir, self.session_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_dir.chmod(0o700)
        cert, key = self.config_dir / "cert.pem", self.config_dir / "key.pem"
        if not (cert.exists() and key.exists()):
            issued = tls.CertificateAuthority.load(certs_dir, sealer).issue_web(
                ["localhost"], ["127.0.0.1"]
            )
            tls.CertPaths(cert, key, certs_dir / tls.CA_CERT).write(issued)
        self.xrdp_ini.write_text(
            XRDP_INI.format(
                port=port,
                crypt_level=crypt_level,
                cert=cert,
                key=key,
                ssl_protocols=tls_protocols,
                bitmap_cache=_flag(bitmap_cache),
                compression=_flag(compression),
                max_bpp=max_bpp,
                log=self.log_dir / "xrdp.log",
                drives=_flag(drives),
                audio=_flag(audio),
                clipboard=_flag(clipboard),
            )
        )

    def remove(self) -> None:
        """Deletes every file of the instance."""
        shutil.rmtree(self.root, ignore_errors=True)


def _flag(value: bool) -> str:
    return "true" if value else "false"
