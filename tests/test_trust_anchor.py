"""The chain's trust anchor (``lucid.lib.trustanchor``): genesis commits to the
validator set, and a document that breaks a link of that commitment is refused."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import nacl.signing
import pytest

from lucid.blockchain import genesis
from lucid.blockchain.keys import ValidatorInfo, ValidatorSet
from lucid.blockchain.trust import trust_anchor
from lucid.lib import trustanchor
from lucid.lib.trustanchor import TrustAnchorError
from lucid.runtime.config import Settings


def _set(count: int = 3) -> ValidatorSet:
    keys = [nacl.signing.SigningKey.generate() for _ in range(count)]
    return ValidatorSet(
        tuple(
            ValidatorInfo(f"validator-{i}", bytes(k.verify_key).hex()) for i, k in enumerate(keys)
        )
    )


def test_the_anchor_is_the_genesis_of_its_set_and_reads_back() -> None:
    validators = _set()
    anchor = trust_anchor(validators)
    assert anchor.genesis_hash == genesis.genesis_block(validators).hash
    assert anchor.validator_count == 3
    document = json.loads(anchor.to_json())
    assert document["finality_rule"] == "3*approvals >= 2*validator_count"
    assert document["validator_set_changes"] == "none"
    assert [v["public_key"] for v in document["validators"]] == [v.public_key for v in validators]
    assert trustanchor.loads(anchor.to_json()) == anchor


def test_two_sets_have_two_genesis_hashes() -> None:
    assert trust_anchor(_set()).genesis_hash != trust_anchor(_set()).genesis_hash


def _edited(edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(trust_anchor(_set()).document())
    edit(document)
    return document


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["validators"][1].update(public_key="ab" * 32),
            "names another validator set",
        ),
        (lambda d: d["validators"].pop(), "validator_count 3 but 2 validators"),
        (lambda d: d.update(validator_count=2), "validator_count 2 but 3 validators"),
        (lambda d: d.update(genesis_hash="00" * 32), "does not hash to genesis_hash"),
        (
            lambda d: d.update(genesis_transaction=trustanchor.b64(b"lucid_blocks/tx/v1\n{}")),
            "transaction root is not that of genesis_transaction",
        ),
        (lambda d: d.update(format="something/else"), "format must be"),
        (lambda d: d.update(validator_set_changes="by vote"), "changes are not supported"),
        (lambda d: d["validators"][0].update(public_key="xyz"), "not 64 lowercase hex"),
        (lambda d: d.update(validators=[]), "validators is missing or empty"),
        (lambda d: d.update(network="another"), "of network 'lucid_blocks'"),
        (lambda d: d.pop("genesis_header"), "genesis_header is missing"),
    ],
)
def test_a_document_that_breaks_the_commitment_is_refused(edit: Any, message: str) -> None:
    with pytest.raises(TrustAnchorError, match=message):
        trustanchor.parse(_edited(edit))


def test_a_set_with_a_duplicate_key_is_refused() -> None:
    validators = _set(2)
    twice = ValidatorSet(
        (validators.members[0], ValidatorInfo("validator-1", validators.members[0].public_key))
    )
    with pytest.raises(TrustAnchorError, match="key appears twice"):
        trustanchor.parse(trust_anchor(twice).document())


def test_not_json_is_refused() -> None:
    with pytest.raises(TrustAnchorError, match="not JSON"):
        trustanchor.loads("{")
    with pytest.raises(TrustAnchorError, match="not a JSON object"):
        trustanchor.loads("[]")


def test_chain_trust_anchor_without_a_stored_chain_fails(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lucid", "chain", "trust-anchor"],
        env={
            **os.environ,
            "LUCID_MONGODB_URI": settings.mongodb_uri,
            "LUCID_MONGODB_DB": f"empty_{uuid.uuid4().hex[:8]}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no trust anchor: no chain stored" in result.stderr
    assert result.stdout == ""
