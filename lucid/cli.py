"""The ``lucid`` command: run clusters, the edge, the whole mesh, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from lucid.runtime.config import CLUSTERS, Settings, load_settings
from lucid.runtime.logs import configure_logging


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.runtime.server import serve

    port = args.port
    if args.validator is not None:
        if args.cluster != "blockchain":
            raise SystemExit("--validator applies to the blockchain cluster only")
        settings = settings.replace(validator_index=args.validator)
        port = port or settings.validator_port(args.validator)
    configure_logging(args.cluster, settings.log_level)
    app = importlib.import_module(f"lucid.{args.cluster}.app")
    asyncio.run(serve(app.build, settings, args.cluster, port=port))


def _edge(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.envoy import exec_edge

    exec_edge(settings, port=args.port)


def _up(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.supervisor import up

    configure_logging("supervisor", "WARNING")
    asyncio.run(up(settings, demo=args.demo, sidecars=args.sidecars))


def _demo(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.demo import run_demo

    configure_logging("demo", "WARNING")
    sys.exit(0 if asyncio.run(run_demo(settings)) else 1)


def _devnet(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.devnet.tron.main import config_from, run

    configure_logging("devnet-tron", settings.log_level)
    asyncio.run(run(config_from(args)))


def _desktop(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.desktop import run_desktop

    configure_logging("desktop", "WARNING")
    sys.exit(0 if asyncio.run(run_desktop(settings, seconds=args.seconds)) else 1)


def _certs(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.supervisor import ensure_certs

    written = ensure_certs(settings)
    print(
        f"certificates in {settings.certs_dir}: issued {', '.join(written) or 'none (all valid)'}"
    )


def _chain(settings: Settings, args: argparse.Namespace) -> None:
    configure_logging("chain", "WARNING")
    if args.action == "trust-anchor":
        from lucid.blockchain.trust import main as print_anchor

        sys.exit(print_anchor(settings, args.validator))
    from lucid.blockchain.verify import main as verify_chain

    sys.exit(verify_chain(settings, args.validator))


def _config(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.codegen import deployconfig, meshconfig
    from lucid.runtime.contracts import catalog
    from lucid.runtime.server import VERSION

    written = meshconfig.write(Path(args.out), catalog(), VERSION)
    written += deployconfig.write(Path(args.out), catalog(), VERSION)
    print(f"wrote {len(written)} files under {args.out}: consul/, envoy/ and deploy/")


def _dev(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.supervisor.localservers import LocalStores

    root = settings.var_dir / args.profile / "stores"
    if args.action == "down":
        LocalStores.at(root, mongo_port=1, redis_port=1, backend=settings.ferretdb_backend).stop()
        print(f"local servers of {args.profile} stopped")
        return
    stores = LocalStores.at(
        root,
        mongo_port=args.mongo_port,
        redis_port=args.redis_port,
        backend=settings.ferretdb_backend,
    )
    stores.start(detached=True)
    lines = [f"{k}={v}" for k, v in stores.env().items()]
    if args.env_file:
        path = Path(args.env_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def code_declarations() -> list[Any]:
    """Every cluster's schema declaration as its package on disk states it
    (``lucid/<cluster>/schema.py`` or ``app.py``: ``COLLECTIONS``, ``BLOB_PATHS``)."""
    from lucid.runtime.schema import declaration_of

    found = []
    for cluster in CLUSTERS:
        collections: Any = ()
        blob_paths: Any = ()
        for module_name in (f"lucid.{cluster}.schema", f"lucid.{cluster}.app"):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            collections = collections or getattr(module, "COLLECTIONS", ())
            blob_paths = blob_paths or getattr(module, "BLOB_PATHS", ())
        found.append(declaration_of(cluster, collections, blob_paths))
    return found


def _db(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.storage.dbcli import validate

    status, text = asyncio.run(
        validate(
            settings,
            code_declarations=code_declarations(),
            from_code=args.from_code,
            as_json=args.json,
        )
    )
    print(text)
    sys.exit(status)


def _proof(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.sessions.proofcli import verify_file

    ok = asyncio.run(
        verify_file(
            settings,
            Path(args.file),
            sys.stdout,
            trust=Path(args.trust) if args.trust else None,
            chain=args.chain,
            blob=Path(args.blob) if args.blob else None,
            token=args.token,
            ca=Path(args.ca) if args.ca else None,
        )
    )
    sys.exit(0 if ok else 1)


def _devnet_parser(sub: Any) -> None:
    from lucid.devnet.tron.main import add_arguments

    devnet = sub.add_parser("devnet", help="local stand-ins of outside networks")
    devnet_sub = devnet.add_subparsers(dest="network", required=True)
    tron_net = devnet_sub.add_parser("tron", help="a local TRON network (java-tron's HTTP API)")
    add_arguments(tron_net)
    tron_net.set_defaults(run=_devnet)


def _node_agent(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.nodeagent.agent import AgentOptions, run_agent

    configure_logging("node-agent", settings.log_level)
    options = AgentOptions(
        name=args.name,
        state_dir=Path(args.state_dir or settings.var_dir / "node-agents" / args.name),
        token_file=Path(args.token_file),
        pool_id=args.pool_id,
        port=args.port,
        heartbeat_s=args.heartbeat_s,
        bandwidth_mbps=args.bandwidth_mbps,
        stake_tx_hash=args.stake_tx,
    )
    asyncio.run(run_agent(settings, options))


def _node_agent_parser(sub: Any) -> None:
    agent = sub.add_parser(
        "node-agent",
        help="run a worker node's agent: register it, heartbeat, prove its uptime to the chain",
    )
    agent.add_argument("--name", required=True, help="the node's name (3-100 of [A-Za-z0-9_-])")
    agent.add_argument(
        "--token-file", required=True, help="a file holding the operator's access token"
    )
    agent.add_argument("--pool-id", default="", help="a pool to join at registration")
    agent.add_argument("--state-dir", default="", help="keys and node id (var/node-agents/NAME)")
    agent.add_argument("--port", type=int, default=0, help="the probe endpoint (0: a free port)")
    agent.add_argument("--heartbeat-s", type=float, default=30.0, help="seconds between beats")
    agent.add_argument("--bandwidth-mbps", type=int, default=100, help="declared uplink")
    agent.add_argument(
        "--stake-tx",
        default="",
        help="a stake transaction the node's address paid already (64 hex); by default the "
        "agent pays 100 USDT to the stake address itself",
    )
    agent.set_defaults(run=_node_agent)


def _replay(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.rdp.replaycli import replay_to_file
    from lucid.sessions.proofcli import UNANCHORED, load_anchor

    async def run() -> bool:
        if not args.trust and not args.chain:
            print(UNANCHORED)
            return False
        trust = Path(args.trust) if args.trust else None
        ca = Path(args.ca) if args.ca else None
        anchor = await load_anchor(settings, trust, args.chain, ca, sys.stdout)
        if anchor is None:
            return False
        return await replay_to_file(
            settings, args.session_id, Path(args.out), sys.stdout, token=args.token, anchor=anchor
        )

    sys.exit(0 if asyncio.run(run()) else 1)


def _desktop_parser(sub: Any) -> None:
    desktop = sub.add_parser(
        "desktop", help="start a real RDP desktop on a running mesh and record it"
    )
    desktop.add_argument(
        "--seconds", type=float, default=None, help="end after this long (default: on Enter)"
    )
    desktop.set_defaults(run=_desktop)


def _replay_parser(sub: Any) -> None:
    replay = sub.add_parser(
        "replay", help="write a recording as MPEG-TS, every segment checked against its anchor"
    )
    replay.add_argument("session_id", help="the RDP (= recording) session id")
    replay.add_argument("-o", "--out", required=True, help="the file to write (.ts)")
    replay.add_argument(
        "--token", default=os.environ.get("LUCID_TOKEN", ""), help="the user's access token"
    )
    replay.add_argument("--trust", default="", help="the trust anchor (lucid chain trust-anchor)")
    replay.add_argument(
        "--chain",
        default="",
        help="fetch the trust anchor from this chain endpoint (URL or host:port)",
    )
    replay.add_argument("--ca", default="", help="CA certificate for an https --chain URL")
    replay.set_defaults(run=_replay)


def _proof_parser(sub: Any) -> None:
    proof = sub.add_parser("proof", help="chunk proofs")
    proof.add_argument("action", choices=["verify"])
    proof.add_argument("file", help="a GetChunkProof response as JSON")
    proof.add_argument("--blob", default=None, help="also check this downloaded blob")
    proof.add_argument(
        "--trust",
        default=None,
        metavar="ANCHOR",
        help="the trust anchor (lucid chain trust-anchor)",
    )
    proof.add_argument(
        "--chain",
        default="",
        metavar="ADDR",
        help="fetch the trust anchor from this chain endpoint (https://edge:port or host:port)",
    )
    proof.add_argument("--ca", default=None, help="CA certificate of an https --chain URL")
    proof.add_argument(
        "--token",
        default=os.environ.get("LUCID_TOKEN", ""),
        help="with --chain host:port, also ask the chain (VerifyAnchoring, GetBlock)",
    )
    proof.set_defaults(run=_proof)


def _admin(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.admin.grantcli import grant

    status, text = asyncio.run(grant(settings, args.tron_address, args.role))
    print(text, file=sys.stderr if status else sys.stdout)
    sys.exit(status)


def _sign(settings: Settings, args: argparse.Namespace) -> None:
    from lucid.lib.tip191 import address_of_private_key, sign

    key_file = Path(args.key_file)
    if args.new_key:
        if key_file.exists():
            raise SystemExit(f"{key_file} exists: not overwriting a key")
        key_file.touch(mode=0o600)
        key_file.write_text(os.urandom(32).hex() + "\n")
    try:
        key = bytes.fromhex(key_file.read_text().strip().removeprefix("0x"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{key_file}: not a private key in hex ({exc})") from None
    if len(key) != 32:
        raise SystemExit(f"{key_file}: a private key is 32 bytes (64 hex digits)")
    if args.address or args.new_key:
        print(address_of_private_key(key))
        return
    if args.message_file:
        message = Path(args.message_file).read_text()
    elif args.message is not None:
        message = args.message
    else:
        message = sys.stdin.read()
    print(sign(key, message))


def _sign_parser(sub: Any) -> None:
    sign = sub.add_parser(
        "sign",
        help="sign a message with a TRON key (TIP-191, as TronLink's signMessageV2 does)",
        description="Prints the hex signature the console's sign-in accepts from a person "
        "without a wallet extension: save the challenge as a file and pass --message-file.",
    )
    sign.add_argument("message", nargs="?", help="the message (else --message-file or stdin)")
    sign.add_argument("--key-file", required=True, help="a file holding the private key in hex")
    sign.add_argument("--message-file", help="read the message from this file (exactly)")
    sign.add_argument("--address", action="store_true", help="print the key's TRON address")
    sign.add_argument(
        "--new-key", action="store_true", help="create --key-file with a new key; print its address"
    )
    sign.set_defaults(run=_sign)


def _admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="operator tools of the admin console")
    admin.add_argument("action", choices=["grant"])
    admin.add_argument("tron_address", help="the TRON address the user signed in with")
    admin.add_argument("role", help="super_admin (the first one), admin, node_operator or user")
    admin.set_defaults(run=_admin)


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    top = argparse.ArgumentParser(prog="lucid", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one cluster's gRPC server")
    serve.add_argument("cluster", choices=CLUSTERS)
    serve.add_argument("--port", type=int, default=None, help="override the port map")
    serve.add_argument(
        "--validator",
        type=int,
        default=None,
        metavar="N",
        help="blockchain only: run validator N (0 on the blockchain port, N ≥ 1 on 50061+)",
    )
    serve.set_defaults(run=_serve)

    edge = sub.add_parser("edge", help="run the edge (Envoy: REST, grpc-web)")
    edge.add_argument("--port", type=int, default=None)
    edge.set_defaults(run=_edge)

    up = sub.add_parser("up", help="run the whole mesh on loopback until Ctrl-C")
    up.add_argument("--demo", action="store_true", help="then walk through it once (lucid demo)")
    up.add_argument(
        "--sidecars", action="store_true", help="each cluster behind its own Envoy sidecar"
    )
    up.set_defaults(run=_up)

    demo = sub.add_parser(
        "demo",
        help="sign in, record, anchor, verify a proof and pay a dev node on a running mesh",
    )
    demo.set_defaults(run=_demo)
    _desktop_parser(sub)

    _devnet_parser(sub)
    certs = sub.add_parser("certs", help="development certificates")
    certs.add_argument("action", choices=["init"])
    certs.set_defaults(run=_certs)

    chain = sub.add_parser("chain", help="chain tools (offline, from MongoDB)")
    chain.add_argument(
        "action",
        choices=["verify", "trust-anchor"],
        help="verify: walk the whole stored chain; trust-anchor: print the genesis hash and "
        "validator set proofs are checked against (JSON)",
    )
    chain.add_argument("--validator", type=int, default=0, metavar="N", help="whose replica")
    chain.set_defaults(run=_chain)

    config = sub.add_parser(
        "config", help="production configuration (consul/, envoy/) from the plane table"
    )
    config.add_argument("action", choices=["generate"])
    config.add_argument("--out", default=".", help="the repository root to write into")
    config.set_defaults(run=_config)

    dev = sub.add_parser("dev", help="local FerretDB and Redis (detached)")
    dev.add_argument("action", choices=["up", "down"])
    dev.add_argument("--profile", default="test", help="data under var/<profile>/")
    dev.add_argument("--env-file", default=None, help="write the connection settings here")
    dev.add_argument("--mongo-port", type=int, default=0, help="0 picks a free port")
    dev.add_argument("--redis-port", type=int, default=0, help="0 picks a free port")
    dev.set_defaults(run=_dev)

    db = sub.add_parser(
        "db",
        help="validate MongoDB, Redis and the blob volume against every cluster's schema",
        description="validate: compare the schema declarations (those the storage cluster "
        "recorded from the running clusters, else those of the code) with MongoDB, Redis "
        "and the blob volume of these settings; exit 1 on problems, 2 if MongoDB is down",
    )
    db.add_argument("action", choices=["validate"])
    db.add_argument("--from-code", action="store_true", help="declarations of the code on disk")
    db.add_argument("--json", action="store_true", help="the ValidateSchemaResponse as JSON")
    db.set_defaults(run=_db)

    _proof_parser(sub)
    _admin_parser(sub)
    _sign_parser(sub)

    _node_agent_parser(sub)
    _replay_parser(sub)
    return top


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lucid`` console script."""
    args = parser().parse_args(argv)
    settings = load_settings()
    try:
        args.run(settings, args)
    except KeyboardInterrupt:
        sys.exit(130)
