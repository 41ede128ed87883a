"""The chain's pure rules: transactions, TRON refusal, blocks, genesis, approvals, PoOT
credits and leaders (spec 02 §7 checks 1, 3, 6, 11, 12 and 14)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest
from google.protobuf import struct_pb2

from lucid.blockchain import blocks, genesis, poot, transactions
from lucid.blockchain.keys import (
    ValidatorInfo,
    ValidatorSet,
    public_key_hex,
    required_approvals,
    sign_hex,
)
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical, merkle, pootvotes
from lucid.runtime.errors import ErrorCode, LucidError
from tests.chain_support import data_body, now_stamp, signed

KEYS = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(3)]
VALIDATORS = ValidatorSet(
    tuple(ValidatorInfo(f"validator-{i}", public_key_hex(k)) for i, k in enumerate(KEYS))
)


def code_of(exc: pytest.ExceptionInfo[LucidError]) -> int:
    return exc.value.code


# -- transactions -----------------------------------------------------------------------


def test_a_signed_data_record_keeps_the_rules() -> None:
    tx = signed(data_body())
    checked = transactions.check(tx, VALIDATORS, now=datetime.now(UTC))
    assert checked.tx_hash == canonical.sha256_hex(transactions.encode_body(tx.body))
    assert checked.size_bytes == tx.ByteSize()
    assert not checked.session_id and not checked.rides_along


def test_a_transaction_body_round_trips_through_its_encoding() -> None:
    body = data_body()
    assert transactions.body_from_encoding(transactions.encode_body(body)) == body


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: setattr(t.body, "type", 9), ErrorCode.ERROR_CODE_INVALID_ARGUMENT),
        (
            lambda t: setattr(t.body, "type", pb.TRANSACTION_TYPE_SYSTEM),
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        ),
        (
            lambda t: setattr(t.body, "fee_micros", 1_000_010_000),
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        ),
        (lambda t: setattr(t.body, "fee_micros", -1), ErrorCode.ERROR_CODE_INVALID_ARGUMENT),
        (lambda t: setattr(t, "signature", "ab" * 31), ErrorCode.ERROR_CODE_INVALID_ARGUMENT),
        (lambda t: setattr(t, "signature", "ab" * 64), ErrorCode.ERROR_CODE_TRANSACTION_INVALID),
        (lambda t: setattr(t.body, "nonce", "changed"), ErrorCode.ERROR_CODE_TRANSACTION_INVALID),
        (lambda t: t.body.ClearField("create_time"), ErrorCode.ERROR_CODE_INVALID_ARGUMENT),
    ],
    ids=[
        "bad-type",
        "payload-mismatch",
        "fee-1000.01",
        "fee-negative",
        "short-signature",
        "wrong-signature",
        "tampered-body",
        "no-time",
    ],
)
def test_broken_transactions_are_refused(mutate: object, code: int) -> None:
    tx = signed(data_body())
    mutate(tx)  # type: ignore[operator]
    with pytest.raises(LucidError) as exc:
        transactions.check(tx, VALIDATORS, now=datetime.now(UTC))
    assert code_of(exc) == code


def test_an_anchor_without_merkle_root_is_refused() -> None:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
        session_anchor=pb.SessionAnchorPayload(session_id=str(uuid.uuid4())),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError) as exc:
        transactions.check(transactions.sign(body, "validator-0", KEYS[0]), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_INVALID_ARGUMENT
    assert any("merkle_root" in v.field for v in exc.value.field_violations)


def _poot_vote_tx(vote: cpb.SubmitConsensusVoteRequest) -> pb.SignedTransaction:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_CONSENSUS_VOTE,
        consensus_vote=pootvotes.payload(vote),
        create_time=now_stamp(),
    )
    return transactions.sign(body, "validator-0", KEYS[0])


def test_a_poot_vote_is_checkable_from_its_transaction_alone() -> None:
    node_key = nacl.signing.SigningKey.generate()
    vote = pootvotes.poot_vote(
        voter_id=str(uuid.uuid4()),
        public_key=public_key_hex(node_key),
        target_id=str(uuid.uuid4()),
        slot=poot.task_slot(datetime.now(UTC)),
        approve=False,
        proof_signature="ab" * 64,
    )
    vote.signature = pootvotes.sign(vote, node_key)
    checked = transactions.check(_poot_vote_tx(vote), VALIDATORS, now=datetime.now(UTC))
    assert checked.vote is not None
    assert checked.vote.slot == poot.task_slot(datetime.now(UTC))
    assert (checked.vote.voter_id, checked.vote.target_id) == (vote.voter_id, vote.target_id)
    assert checked.vote.decision == pb.VOTE_DECISION_REJECT

    tampered = cpb.SubmitConsensusVoteRequest()
    tampered.CopyFrom(vote)
    tampered.decision = pb.VOTE_DECISION_APPROVE  # the validator changed the node's verdict
    unsigned = cpb.SubmitConsensusVoteRequest()
    unsigned.CopyFrom(vote)
    unsigned.ClearField("signature")
    for bad, words in ((tampered, "does not verify"), (unsigned, "carries the voter's key")):
        with pytest.raises(LucidError, match=words) as exc:
            transactions.check(_poot_vote_tx(bad), VALIDATORS, now=datetime.now(UTC))
        assert code_of(exc) == ErrorCode.ERROR_CODE_TRANSACTION_INVALID


def test_a_transaction_over_one_mebibyte_is_refused() -> None:
    params = struct_pb2.Struct()
    params.update({"blob": "x" * (1024 * 1024)})
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action="note.add", parameters=params),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError, match="1 MiB") as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_TRANSACTION_INVALID


def test_a_transaction_from_the_future_is_refused() -> None:
    body = data_body()
    body.create_time.FromDatetime(datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(LucidError, match="future"):
        transactions.check(signed(body), VALIDATORS, now=datetime.now(UTC))


@pytest.mark.parametrize(
    "parameters",
    [
        {"tron_address": "x"},
        {"to": "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"},
        {"target": "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"},
        {"amountUsdt": 5},
        {"nested": [{"payout_id": "p"}]},
        {"TRX": 1},
    ],
)
def test_tron_data_is_refused(parameters: dict[str, object]) -> None:
    params = struct_pb2.Struct()
    params.update(parameters)
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action="parameter.set", parameters=params),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError) as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_TRON_FORBIDDEN


@pytest.mark.parametrize("action", ["payout", "payout.send", "tron.transfer", "usdt.pay"])
def test_payout_actions_are_refused(action: str) -> None:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action=action),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError) as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_TRON_FORBIDDEN


def test_a_tron_address_in_a_description_is_refused() -> None:
    body = data_body(description="pay TJRabPrwbZy45sbavfcjinPJC18kjpRTv8 please")
    with pytest.raises(LucidError) as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_TRON_FORBIDDEN


@pytest.mark.parametrize(
    "parameters",
    [
        {"to": "41A614F803B6FD780986A42C78EC9C7F77E6DED13C\n"},  # $ matches before a newline
        {"feeInSun": 1},
        {"list": ["x", {"deep": ["TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"]}]},
        {"ÉtronÉ": 1},
    ],
)
def test_the_tron_prefilter_never_skips_what_the_walk_refuses(
    parameters: dict[str, object],
) -> None:
    params = struct_pb2.Struct()
    params.update(parameters)
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action="parameter.set", parameters=params),
        create_time=now_stamp(),
    )
    encoded = transactions.encode_body(body)
    data = canonical.decode_tagged(encoded, canonical.TX_TAG)
    assert transactions.tron_violation(data) is not None
    assert transactions.may_name_tron(encoded)
    with pytest.raises(LucidError) as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_TRON_FORBIDDEN


def test_a_plain_body_skips_the_tron_walk() -> None:
    encoded = transactions.encode_body(data_body(description="an ordinary record"))
    assert not transactions.may_name_tron(encoded)
    assert transactions.tron_violation(canonical.decode_tagged(encoded, canonical.TX_TAG)) is None


def test_unknown_fields_are_refused() -> None:
    tx = signed(data_body())
    parsed = pb.SignedTransaction()
    parsed.ParseFromString(tx.SerializeToString() + b"\xa8\x06\x01")
    with pytest.raises(LucidError, match="does not know"):
        transactions.check(parsed, VALIDATORS)


def test_validator_only_types_need_a_validator_signature() -> None:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_CONSENSUS_VOTE,
        consensus_vote=pb.ConsensusVotePayload(
            voter_id="x",
            vote_type=pb.VOTE_TYPE_PARAMETER,
            target_id="t",
            decision=pb.VOTE_DECISION_APPROVE,
        ),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError) as exc:
        transactions.check(signed(body), VALIDATORS)
    assert code_of(exc) == ErrorCode.ERROR_CODE_NOT_ALLOWED
    assert transactions.check(transactions.sign(body, "validator-1", KEYS[1]), VALIDATORS)
    with pytest.raises(LucidError):  # a validator id with another key
        transactions.check(transactions.sign(body, "validator-1", KEYS[2]), VALIDATORS)


def test_the_genesis_action_is_refused_outside_genesis() -> None:
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM,
        system=pb.SystemPayload(action="genesis"),
        create_time=now_stamp(),
    )
    with pytest.raises(LucidError, match="genesis"):
        transactions.check(signed(body), VALIDATORS)


# -- genesis and blocks --------------------------------------------------------------------


def test_genesis_is_height_zero_with_zero_parent_and_the_validator_set() -> None:
    block = genesis.genesis_block(VALIDATORS)
    assert block.header.height == 0
    assert block.header.previous_hash == "0" * 64
    assert genesis.genesis_block(VALIDATORS).hash == block.hash  # deterministic
    assert genesis.validator_set_of(block) == VALIDATORS
    assert genesis.check_genesis(block) == []
    data = canonical.decode_tagged(
        transactions.encode_body(block.transactions[0].signed.body), canonical.TX_TAG
    )
    assert data["system"]["parameters"]["network_name"] == "lucid_blocks"
    assert data["system"]["parameters"]["consensus_algorithm"] == "PoOT"
    other = ValidatorSet(VALIDATORS.members[:2])
    assert genesis.genesis_block(other).hash != block.hash


def make_block(*, proposer: int = 0, txs: int = 2, slot: int = 0) -> tuple[pb.Block, blocks.Tip]:
    parent = blocks.tip_of(genesis.genesis_block(VALIDATORS))
    checked = [transactions.check(signed(data_body()), VALIDATORS) for _ in range(txs)]
    block = blocks.build(
        parent=parent,
        transactions=checked,
        proposer_id=f"validator-{proposer}",
        key=KEYS[proposer],
        slot=slot,
        block_time_ns=parent.time_ns + 10**9,
    )
    return block, parent


def approve(block: pb.Block, signers: list[int], round_: int = 0) -> pb.Block:
    final = pb.Block()
    final.CopyFrom(block)
    for i in signers:
        final.approvals.add(
            validator_id=f"validator-{i}",
            public_key=public_key_hex(KEYS[i]),
            signature=sign_hex(
                KEYS[i], canonical.approval_message(block.header.height, round_, block.hash)
            ),
            round=round_,
        )
    return final


def test_a_built_block_passes_every_check() -> None:
    block, parent = make_block()
    assert blocks.check_header(block, parent=parent, validators=VALIDATORS) == []
    checked, errors = blocks.check_transactions(block, VALIDATORS)
    assert errors == [] and len(checked) == 2
    assert (
        block.header.merkle_root
        == merkle.root(merkle.leaf_hash(bytes.fromhex(h)) for h in block.tx_hashes).hex()
    )
    assert block.hash == canonical.sha256_hex(blocks.encoded_header(block.header))


def test_a_tampered_transaction_list_is_found() -> None:
    block, _ = make_block()
    swapped = pb.Block()
    swapped.CopyFrom(block)
    swapped.tx_hashes[0], swapped.tx_hashes[1] = block.tx_hashes[1], block.tx_hashes[0]
    assert any("merkle root" in e for e in blocks.merkle_errors(swapped))
    extra = pb.Block()
    extra.CopyFrom(block)
    extra.transactions[0].signed.body.nonce = "tampered"
    _, errors = blocks.check_transactions(extra, VALIDATORS)
    assert errors


def test_a_foreign_signer_is_found() -> None:
    block, _ = make_block()
    stranger = nacl.signing.SigningKey.generate()
    block.proposer_public_key = public_key_hex(stranger)
    block.proposer_signature = sign_hex(stranger, canonical.proposal_message(block.hash))
    assert blocks.proposer_errors(block, VALIDATORS)
    forged, _ = make_block()
    forged.proposer_signature = sign_hex(KEYS[1], canonical.proposal_message(forged.hash))
    assert any("does not verify" in e for e in blocks.proposer_errors(forged, VALIDATORS))


def test_links_heights_and_hashes_are_checked() -> None:
    block, parent = make_block()
    assert blocks.link_errors(block, blocks.Tip(parent.height, "ab" * 32, parent.time_ns))
    assert blocks.link_errors(block, blocks.Tip(parent.height + 1, parent.hash, parent.time_ns))
    assert blocks.link_errors(
        block, blocks.Tip(parent.height, parent.hash, parent.time_ns + 10**10)
    )
    block.header.slot = 9
    assert any("hash mismatch" in e for e in blocks.hash_errors(block))


def test_blocks_hold_at_most_1000_transactions() -> None:
    block, _ = make_block()
    block.tx_hashes.extend([f"{i:064x}" for i in range(1000)])
    assert any("at most 1000" in e for e in blocks.merkle_errors(block))


def test_approvals_need_two_thirds_of_one_round() -> None:
    block, _ = make_block()
    assert blocks.check_approvals(approve(block, [0, 1]), VALIDATORS) == []
    assert blocks.check_approvals(approve(block, [0, 1, 2]), VALIDATORS) == []
    assert blocks.check_approvals(approve(block, [2]), VALIDATORS)
    assert blocks.check_approvals(approve(block, [0, 0]), VALIDATORS)
    mixed = approve(block, [0])
    mixed.approvals.extend(approve(block, [1], round_=1).approvals)
    assert any("several rounds" in e for e in blocks.check_approvals(mixed, VALIDATORS))
    wrong_round = approve(block, [0, 1], round_=2)
    wrong_round.approvals[1].round = 2
    wrong_round.approvals[0].signature = approve(block, [0], round_=3).approvals[0].signature
    assert blocks.check_approvals(wrong_round, VALIDATORS)


@pytest.mark.parametrize(("n", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5)])
def test_finality_threshold_is_the_least_a_with_3a_at_least_2n(n: int, needed: int) -> None:
    assert required_approvals(n) == needed
    assert 3 * needed >= 2 * n > 3 * (needed - 1)


# -- PoOT ---------------------------------------------------------------------------------

MIB = 1024 * 1024
GIB = 1024 * MIB


def test_work_credit_formulas() -> None:
    assert poot.relay_credits(0, 12 * MIB) == 3
    assert poot.relay_credits(1, 0) == 1
    assert poot.storage_credits(2 * GIB, 3) == 26
    assert poot.validation_credits(4) == 20
    assert poot.uptime_score(604_800) == 1.0
    assert poot.uptime_score(2 * 604_800) == 1.0
    assert math.isclose(poot.uptime_score(302_400), 0.5)


def facts(node: str, task: int, value: int, **extra: int) -> poot.TaskFacts:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    return poot.TaskFacts(
        node_id=node,
        pool_id=extra.get("pool", ""),  # type: ignore[arg-type]
        slot=poot.task_slot(moment),
        task_type=task,
        value=value,
        session_count=extra.get("sessions", 0),
        chunk_count=extra.get("chunks", 0),
        proof_time=moment,
    )


def test_tallies_sum_a_window() -> None:
    tally = poot.tally(
        "n",
        [
            facts("n", poot.RELAY, 12 * MIB, sessions=1),
            facts("n", poot.STORAGE, 2 * GIB, chunks=3),
            facts("n", poot.VALIDATION, 4),
            facts("n", poot.UPTIME_BEACON, 604_800),
        ],
    )
    assert (tally.relay_credits, tally.storage_credits, tally.validation_credits) == (3, 26, 20)
    assert tally.credits == 49 and tally.live_score == 49.0 and tally.eligible
    beacons_only = poot.tally("v", [facts("v", poot.UPTIME_BEACON, 120)])
    assert beacons_only.credits == 0 and not beacons_only.eligible


def tally(node: str, credits: int, uptime: float) -> poot.Tally:
    return poot.Tally(node, credits, 0, 0, uptime)


CANDIDATES = [f"validator-{i}" for i in range(8)]


def test_the_top_rank_leads() -> None:
    scores = {c: tally(c, 1 + i, 1.0) for i, c in enumerate(CANDIDATES)}
    schedule = poot.schedule(slot=10, seed="ab" * 32, candidates=CANDIDATES, scores=scores)
    assert schedule.primary == "validator-7"
    assert list(schedule.fallbacks) == [f"validator-{i}" for i in (6, 5, 4, 3, 2)]  # ≤ 5 fallbacks
    assert schedule.leader(0) == "validator-7" and schedule.leader(6) == "validator-7"


def test_a_recent_winner_is_skipped_for_16_slots() -> None:
    scores = {c: tally(c, 1 + i, 1.0) for i, c in enumerate(CANDIDATES)}
    schedule = poot.schedule(
        slot=11,
        seed="ab" * 32,
        candidates=CANDIDATES,
        scores=scores,
        recent_winners=["validator-7"],
    )
    assert schedule.primary == "validator-6"


def test_a_live_score_below_0_2_is_skipped() -> None:
    scores = {
        "validator-0": tally("validator-0", 1, 0.19),
        "validator-1": tally("validator-1", 1, 0.2),
    }
    assert not scores["validator-0"].eligible and scores["validator-1"].eligible
    schedule = poot.schedule(slot=1, seed="cd" * 32, candidates=CANDIDATES[:2], scores=scores)
    assert schedule.primary == "validator-1"


def test_ties_are_broken_by_the_seed_and_agreed() -> None:
    seeds = [f"{i:064x}" for i in range(40)]
    primaries = {
        poot.schedule(slot=5, seed=s, candidates=CANDIDATES[:3], scores={}).primary for s in seeds
    }
    assert len(primaries) == 3  # every validator leads some slot
    once = poot.schedule(slot=5, seed=seeds[0], candidates=CANDIDATES[:3], scores={})
    again = poot.schedule(
        slot=5, seed=seeds[0], candidates=list(reversed(CANDIDATES[:3])), scores={}
    )
    assert once == again
    assert sorted(once.leaders) == CANDIDATES[:3]


def test_a_task_proof_is_signed_over_its_canonical_encoding() -> None:
    key = nacl.signing.SigningKey.generate()
    now = datetime.now(UTC)
    proof = cpb.TaskProof(
        node_id=str(uuid.uuid4()),
        slot=poot.task_slot(now),
        task_type=cpb.TASK_TYPE_RELAY_BANDWIDTH,
        value=5 * MIB,
        session_count=1,
        public_key=public_key_hex(key),
    )
    proof.proof_time.FromDatetime(now)
    proof.signature = sign_hex(key, poot.proof_message(proof))
    assert poot.check_task_proof(proof).value == 5 * MIB
    assert poot.proof_from_parameters(poot.proof_parameters(proof)) == proof
    proof.value += 1
    with pytest.raises(LucidError):
        poot.check_task_proof(proof)


def test_a_validator_node_id_is_a_uuid4_of_its_key() -> None:
    node = poot.validator_node_id(public_key_hex(KEYS[0]))
    assert uuid.UUID(node).version == 4
    assert node == poot.validator_node_id(public_key_hex(KEYS[0]))
    assert node != poot.validator_node_id(public_key_hex(KEYS[1]))


# -- the TRON wall --------------------------------------------------------------------------


def test_the_chain_package_never_imports_tron_or_payments() -> None:
    root = Path(__file__).resolve().parents[1] / "lucid" / "blockchain"
    pattern = re.compile(r"^\s*(import|from)\s+(tronpy|lucid\.payments)\b", re.MULTILINE)
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
