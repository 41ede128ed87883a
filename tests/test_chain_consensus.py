"""The voting rules of the consensus, driven by hand on three in-process validators.

Each validator has its own collections in a fresh database and no network: the test
plays the leader, passing requests from one validator's handlers to another's. This
covers what the real processes cannot be timed to show: one prevote per round, no
vote in a lower round, locks and how they move, certificates, and that two blocks of
one height are never both final.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nacl.signing
import pytest

from lucid.blockchain.consensus import APPROVAL, PREVOTE, STALE
from lucid.blockchain.keys import sign_hex
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical
from lucid.runtime.config import Settings
from tests.chain_support import Trio, open_trio


@pytest.fixture
async def trio(settings: Settings) -> AsyncIterator[Trio]:
    async with open_trio(settings) as opened:
        yield opened


async def test_two_thirds_of_prevotes_then_approvals_make_a_block_final(trio: Trio) -> None:
    round_ = trio.round_led_by(0)
    block = trio.block(0, round_)
    answers = await trio.prevotes(block, round_, [0, 1])
    assert all(a.approved for a in answers)
    assert trio.engines[1].open_round(block.hash) is not None
    cert = cpb.PrevoteCertificate(
        height=1, round=round_, block_hash=block.hash, prevotes=[a.prevote for a in answers]
    )
    approved = await trio.approvals(block, round_, cert, [0, 1])
    assert all(a.approved for a in approved)
    final = pb.Block()
    final.CopyFrom(block)
    final.approvals.extend(a.approval for a in approved)
    for engine in trio.engines:  # validator 2 never voted and accepts it all the same
        assert await engine.commit_final(final) == (True, "")
    assert {e.ledger.tip.hash for e in trio.engines} == {block.hash}
    assert await trio.engines[2].commit_final(final) == (True, "")  # again: idempotent


async def test_one_prevote_per_round_and_none_in_a_lower_round(trio: Trio) -> None:
    round_ = trio.round_led_by(0)
    first, second = trio.block(0, round_), trio.block(0, round_)
    (yes,) = await trio.prevotes(first, round_, [1])
    assert yes.approved
    (again,) = await trio.prevotes(first, round_, [1])
    assert again.approved and again.prevote.signature == yes.prevote.signature
    (no,) = await trio.prevotes(second, round_, [1])
    assert not no.approved and "another block" in no.reason
    lower = trio.round_led_by(0, below=round_)
    (old,) = await trio.prevotes(trio.block(0, lower), lower, [1])
    assert not old.approved and "already voted in round" in old.reason


async def test_proposals_out_of_turn_are_refused(trio: Trio) -> None:
    round_ = trio.round_led_by(0)
    block = trio.block(0, round_)
    (wrong_leader,) = await trio.prevotes(block, round_, [1], leader=2)
    assert not wrong_leader.approved and "does not lead" in wrong_leader.reason
    future = round_ + 6
    (early,) = await trio.prevotes(trio.block(0, round_), future, [1], leader=0)
    assert not early.approved
    forged = trio.block(1, round_)  # validator-1 does not lead this round
    (answer,) = await trio.prevotes(forged, round_, [2], leader=0)
    assert not answer.approved and "not the leader" in answer.reason


async def test_a_request_its_leader_gave_up_on_while_queued_is_skipped(trio: Trio) -> None:
    """A proposal (or approval request) that waited for the ledger lock past its leader's
    deadline is answered without a check and without a stored vote; the same request with
    time to spare is voted on as before."""
    round_ = trio.round_led_by(0)
    block = trio.block(0, round_)
    engine = trio.engines[1]
    propose = cpb.ProposeBlockRequest(block=block, round=round_, leader_id="validator-0")
    cert = trio.certificate(block, round_, [0, 2])
    approve = cpb.ApproveBlockRequest(block=block, round=round_, certificate=cert)
    async with engine.ledger.lock:  # a commit or another round's proposal holds it
        queued = [
            asyncio.ensure_future(engine.handle_propose(propose, 0.05)),
            asyncio.ensure_future(engine.handle_approve(approve, 0.05)),
        ]
        await asyncio.sleep(0.15)
        assert not any(task.done() for task in queued)
    stale_prevote, stale_approval = await asyncio.gather(*queued)
    for answer in (stale_prevote, stale_approval):
        assert not answer.approved and answer.reason == STALE
    for phase in (PREVOTE, APPROVAL):
        assert await engine.repo.ballot(1, phase, round_) is None
    assert await engine.lock_of(1) is None
    in_time = await engine.handle_propose(propose, 5.0)
    assert in_time.approved and in_time.prevote.round == round_
    approved = await engine.handle_approve(approve, 5.0)
    assert approved.approved and approved.approval.round == round_


async def test_an_approval_needs_prevotes_of_two_thirds_of_that_round(trio: Trio) -> None:
    round_ = trio.round_led_by(0)
    block = trio.block(0, round_)
    (alone,) = await trio.approvals(block, round_, trio.certificate(block, round_, [0]), [1])
    assert not alone.approved and "prevotes" in alone.reason
    other_round = trio.certificate(block, round_ - 1, [0, 1])
    (mismatch,) = await trio.approvals(block, round_, other_round, [1])
    assert not mismatch.approved
    forged = trio.certificate(block, round_, [0, 1])
    forged.prevotes[1].signature = forged.prevotes[0].signature
    (bad,) = await trio.approvals(block, round_, forged, [1])
    assert not bad.approved
    (good,) = await trio.approvals(block, round_, trio.certificate(block, round_, [0, 2]), [1])
    assert good.approved and good.approval.round == round_


async def test_a_lock_moves_only_for_prevotes_of_a_later_round(trio: Trio) -> None:
    r1 = trio.round_led_by(0, below=trio.round_led_by(0) - 5)  # r1 + 6 has started
    locked = trio.block(0, r1)
    (approval,) = await trio.approvals(locked, r1, trio.certificate(locked, r1, [0, 1]), [1])
    assert approval.approved  # validator-1 is now locked on `locked` at r1
    r2 = r1 + 3  # a later round led by validator-0 again (3 validators)
    other = trio.block(0, r1, nonce="other")
    (refused,) = await trio.prevotes(other, r2, [1], leader=0)
    assert not refused.approved and refused.locked_block.hash == locked.hash
    assert refused.locked_certificate.round == r1
    stale = trio.certificate(other, r1 - 3, [0, 2])
    request = cpb.ProposeBlockRequest(block=other, round=r2, leader_id="validator-0", justify=stale)
    assert not (await trio.engines[1].handle_propose(request)).approved
    newer = trio.certificate(other, r1 + 1, [0, 2])
    request = cpb.ProposeBlockRequest(block=other, round=r2, leader_id="validator-0", justify=newer)
    assert (await trio.engines[1].handle_propose(request)).approved
    # the locked block itself is prevoted without any justification
    (same,) = await trio.prevotes(locked, r2 + 3, [1], leader=0)
    assert same.approved


async def test_two_blocks_of_one_height_are_never_both_final(trio: Trio) -> None:
    """Validator-0 leads round r with block X; validators 0 and 1 prevote; only validator-1
    approves before validator-0 'crashes'. Validator-2 leads round r+1 with block Y, which
    validators 0 and 2 prevote and approve: Y is final. X can never get a second approval."""
    r = trio.round_led_by(0)
    x = trio.block(0, r)
    prevotes_x = await trio.prevotes(x, r, [0, 1])
    cert_x = cpb.PrevoteCertificate(
        height=1, round=r, block_hash=x.hash, prevotes=[p.prevote for p in prevotes_x]
    )
    (b_approves_x,) = await trio.approvals(x, r, cert_x, [1])
    assert b_approves_x.approved
    r_next = r + 1
    assert trio.engines[0].ledger._schedule is not None
    leader = trio.engines[0].ledger._schedule[1].leader(r_next)
    y = trio.block(int(leader.rsplit("-", 1)[1]), r_next)
    prevotes_y = await trio.prevotes(y, r_next, [0, 2, 1])
    assert [p.approved for p in prevotes_y] == [True, True, False]  # validator-1 is locked on X
    cert_y = cpb.PrevoteCertificate(
        height=1, round=r_next, block_hash=y.hash, prevotes=[p.prevote for p in prevotes_y[:2]]
    )
    approvals_y = await trio.approvals(y, r_next, cert_y, [0, 2])
    assert all(a.approved for a in approvals_y)
    # X: nobody else approves it any more, in its round or any other.
    late = await trio.approvals(x, r, cert_x, [0, 2])
    assert not any(a.approved for a in late)
    final_y = pb.Block()
    final_y.CopyFrom(y)
    final_y.approvals.extend(a.approval for a in approvals_y)
    forged_x = pb.Block()
    forged_x.CopyFrom(x)
    forged_x.approvals.append(b_approves_x.approval)
    ok, reason = await trio.engines[1].commit_final(forged_x)
    assert not ok and "needed" in reason
    for engine in trio.engines:
        assert (await engine.commit_final(final_y))[0]
    assert {e.ledger.tip.hash for e in trio.engines} == {y.hash}


async def test_a_final_block_with_a_bad_transaction_or_approvals_is_refused(trio: Trio) -> None:
    round_ = trio.round_led_by(0)
    block = trio.block(0, round_)
    cert = trio.certificate(block, round_, [0, 1])
    approvals = await trio.approvals(block, round_, cert, [0, 1])
    final = pb.Block()
    final.CopyFrom(block)
    final.approvals.extend(a.approval for a in approvals)
    tampered = pb.Block()
    tampered.CopyFrom(final)
    tampered.transactions[0].signed.body.nonce = "edited"
    ok, reason = await trio.engines[2].commit_final(tampered)
    assert not ok and "transaction 0" in reason
    mixed = pb.Block()
    mixed.CopyFrom(final)
    mixed.approvals[1].round = round_ + 1
    assert not (await trio.engines[2].commit_final(mixed))[0]
    stranger = nacl.signing.SigningKey.generate()
    foreign = pb.Block()
    foreign.CopyFrom(final)
    foreign.approvals[1].signature = sign_hex(
        stranger, canonical.approval_message(1, round_, block.hash)
    )
    assert not (await trio.engines[2].commit_final(foreign))[0]
    assert trio.engines[2].ledger.tip.height == 0
    assert (await trio.engines[2].commit_final(final))[0]
