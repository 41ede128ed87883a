"""``lucid chain verify``: the offline walk of a stored chain finds every edit (spec 02 §7
check 2: links, contiguous heights, hashes recompute; plus signatures, roots, approvals)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lucid.blockchain.config import collection_prefix
from lucid.blockchain.store.chain import Repository, height_key
from lucid.blockchain.verify import Report, verify_chain
from lucid.runtime.config import Settings
from tests.chain_support import Trio, open_trio


@pytest.fixture
async def chain(settings: Settings) -> AsyncIterator[Trio]:
    """Three replicas of a chain of five blocks (genesis and four more)."""
    async with open_trio(settings, block_interval_s=0.01, leader_timeout_s=0.1) as trio:
        for proposer in (0, 1, 2, 0):
            await trio.finalize(proposer, voters=[proposer, (proposer + 1) % 3])
        yield trio


def repo(trio: Trio, index: int) -> Repository:
    return Repository(trio.db, collection_prefix(index))


async def test_sound_replicas_verify(chain: Trio) -> None:
    for index in range(3):
        report = await verify_chain(repo(chain, index))
        assert report.ok, report.describe()
        assert report.blocks_checked == 5 and report.tip_height == 4
        assert report.transactions_checked == 5  # genesis + one per block
        assert report.validators == ["validator-0", "validator-1", "validator-2"]
        assert "verified: 5 blocks" in report.describe()


Edit = Callable[[Repository], Awaitable[None]]


async def set_block(r: Repository, height: int, changes: dict[str, Any]) -> None:
    await r.blocks.update_one({"_id": height_key(height)}, {"$set": changes})


async def edit_tx_of(r: Repository, height: int, changes: dict[str, Any]) -> None:
    block = await r.block_doc(height=height)
    assert block is not None
    await r.transactions.update_one({"_id": block["tx_hashes"][0]}, {"$set": changes})


async def tx_text(r: Repository, height: int) -> str:
    block = await r.block_doc(height=height)
    assert block is not None
    doc = await r.tx_doc(block["tx_hashes"][0])
    assert doc is not None
    return str(doc["canonical"])


EDITS: dict[str, tuple[int, Edit, str]] = {
    "merkle root": (2, lambda r: set_block(r, 2, {"merkle_root": "ee" * 32}), "hash mismatch"),
    "block time": (3, lambda r: set_block(r, 3, {"block_time_nanos": 1}), "hash mismatch"),
    "previous hash": (2, lambda r: set_block(r, 2, {"previous_hash": "ab" * 32}), "hash mismatch"),
    "proposer signature": (
        1,
        lambda r: set_block(r, 1, {"proposer_signature": "00" * 64}),
        "proposer signature",
    ),
    "approval": (4, lambda r: set_block(r, 4, {"approvals.0.signature": "00" * 64}), "approval"),
    "dropped approval": (
        2,
        lambda r: r.blocks.update_one({"height": 2}, {"$pop": {"approvals": 1}}),
        "needed",
    ),
    "genesis": (0, lambda r: set_block(r, 0, {"proposer_id": "validator-0"}), "genesis"),
}


@pytest.mark.parametrize("name", list(EDITS))
async def test_an_edited_block_is_named(chain: Trio, name: str) -> None:
    height, edit, problem = EDITS[name]
    r = repo(chain, 1)
    await edit(r)
    report = await verify_chain(r)
    assert not report.ok
    assert report.bad is not None and report.bad.height == height, report.describe()
    assert any(problem in p for p in report.bad.problems), report.describe()
    assert report.blocks_checked == height
    assert f"FIRST BAD BLOCK: height {height}" in report.describe()
    assert (await verify_chain(repo(chain, 0))).ok  # the other replicas are untouched


async def test_an_edited_transaction_is_found_in_its_block(chain: Trio) -> None:
    r = repo(chain, 2)
    text = await tx_text(r, 3)
    await edit_tx_of(r, 3, {"canonical": text.replace("test record", "test recorD")})
    report = await verify_chain(r)
    assert report.bad is not None and report.bad.height == 3
    assert "hashes to something else" in report.bad.problems[0]


async def test_a_forged_transaction_signature_is_found(chain: Trio) -> None:
    r = repo(chain, 2)
    await edit_tx_of(r, 2, {"signature": "00" * 64})
    report = await verify_chain(r)
    assert report.bad is not None and report.bad.height == 2
    assert "signature" in report.bad.problems[0]


async def test_a_missing_block_or_transaction_is_found(chain: Trio) -> None:
    r = repo(chain, 0)
    block = await r.block_doc(height=4)
    assert block is not None
    await r.transactions.delete_one({"_id": block["tx_hashes"][0]})
    report = await verify_chain(r)
    assert report.bad is not None and report.bad.height == 4
    assert "missing" in report.bad.problems[0]
    await set_block(r, 2, {"height": 7})
    report = await verify_chain(r)
    assert report.bad is not None and report.bad.height == 2
    assert "says height 7" in report.bad.problems[0]
    await r.blocks.delete_one({"_id": height_key(2)})
    report = await verify_chain(r)
    assert report.bad is not None and report.bad.height == 2
    assert "no block is stored at height 2" in report.bad.problems[0]


def run_cli(settings: Settings, database: str, validator: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LUCID_MONGODB_URI": settings.mongodb_uri,
        "LUCID_MONGODB_DB": database,
        "LUCID_VAR_DIR": str(settings.var_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "lucid", "chain", "verify", "--validator", str(validator)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_names_the_first_bad_block(chain: Trio, settings: Settings) -> None:
    sound = run_cli(settings, chain.db.name, 1)
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert "verified: 5 blocks" in sound.stdout
    await set_block(repo(chain, 1), 3, {"merkle_root": "ee" * 32})
    broken = run_cli(settings, chain.db.name, 1)
    assert broken.returncode == 1
    assert "FIRST BAD BLOCK: height 3" in broken.stdout
    empty = run_cli(settings, chain.db.name, 7)
    assert empty.returncode == 1 and "no chain stored" in empty.stdout


def test_report_of_nothing_is_not_ok() -> None:
    assert not Report().ok
