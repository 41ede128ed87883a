"""``lucid devnet tron``: the process running the local TRON network."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

from lucid.devnet.tron.chain import Chain
from lucid.devnet.tron.config import DevnetConfig, parse_fund
from lucid.devnet.tron.http import serve
from lucid.devnet.tron.store import ChainStore

log = logging.getLogger("lucid.devnet.tron")
CHAIN_FILE = "chain.sqlite3"
PORT_FILE = "port"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lucid devnet tron``."""
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--data-dir", default="var/devnet/tron")
    parser.add_argument("--block-interval", type=float, default=3.0, metavar="SECONDS")
    parser.add_argument(
        "--fund",
        action="append",
        default=[],
        metavar="ADDRESS:TRX_SUN:USDT_MICROS",
        help="genesis allocation (first start only); repeatable",
    )
    parser.add_argument("--usdt-contract", default=None, help="the USDT contract's address")


def config_from(args: argparse.Namespace) -> DevnetConfig:
    """The devnet configuration of the command line."""
    config = DevnetConfig(
        data_dir=Path(args.data_dir),
        port=args.port,
        block_interval_s=args.block_interval,
        genesis=tuple(parse_fund(f) for f in args.fund),
    )
    if args.usdt_contract:
        config = replace(config, usdt_contract=args.usdt_contract)
    return config


async def run(config: DevnetConfig) -> None:
    """Runs the devnet until SIGTERM/SIGINT; writes the bound port to ``<data-dir>/port``."""
    store = ChainStore(config.data_dir / CHAIN_FILE)
    chain = Chain(config, store)
    port_file = config.data_dir / PORT_FILE

    def ready(port: int) -> None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, port_file)
        print(f"TRON devnet on http://{config.host}:{port} (head {chain.head['number']})")
        log.info("serving on %s:%d", config.host, port)

    task = asyncio.create_task(serve(chain, config.host, config.port, ready))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        store.close()
