"""The canonical encodings of lucid.lib.canonical: block header v1, canonical JSON v1 and
the signed messages, with fixed test vectors (any change of encoding breaks them)."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib import canonical

HEADER = canonical.HeaderFields(
    version=1,
    height=7,
    previous_hash="11" * 32,
    merkle_root="22" * 32,
    block_time_seconds=1_735_689_600,  # 2025-01-01T00:00:00Z
    block_time_nanos=123_456_789,
    slot=3,
    transaction_count=2,
    proposer_id="validator-1",
)
# The layout of the module doc, field by field.
HEADER_VECTOR = (
    "4c55434944424c4b"  # magic "LUCIDBLK"
    "01"  # version
    "0000000000000007"  # height
    + "11" * 32  # previous_hash
    + "22" * 32  # merkle_root
    + "0000000067748580"  # block_time seconds
    "075bcd15"  # block_time nanos
    "0000000000000003"  # slot
    "00000002"  # transaction_count
    "0b"  # len(proposer_id)
    "76616c696461746f722d31"  # "validator-1"
)
HEADER_HASH = "e3b3895e5c39ffb192570f940a5dc65bb659f06cb04390a085298a5dd85b36a1"

EMPTY_GENESIS_HEADER = canonical.HeaderFields(
    version=1,
    height=0,
    previous_hash=canonical.ZERO_HASH,
    merkle_root=hashlib.sha256(b"").hexdigest(),
    block_time_seconds=1_704_067_200,
    block_time_nanos=0,
    slot=0,
    transaction_count=0,
    proposer_id="genesis",
)
EMPTY_GENESIS_HASH = "c2547e69f42f12f25dc70f432f8b005a064478cdefb6722a5444c1e72cbce8de"

TX_VECTOR = (
    b'lucid_blocks/tx/v1\n{"create_time":"2025-01-01T00:00:00.000000005Z",'
    b'"data_storage":{"content_type":"text/plain","data_hash":"'
    + b"ab"
    * 32
    + b'","description":"z\xc3\xbcrich \\"quoted\\"\\n","size_bytes":1024},'
    b'"fee_micros":250,"nonce":"n-1","type":"TRANSACTION_TYPE_DATA_STORAGE"}'
)
TX_HASH = "4cd701000ecb3a3a2841773f8c1efd68dbadf4d4347f55c8e1601f568c2780b1"


def tx_body() -> pb.TransactionBody:
    return pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_DATA_STORAGE,
        data_storage=pb.DataStoragePayload(
            data_hash="ab" * 32,
            size_bytes=1024,
            content_type="text/plain",
            description='zürich "quoted"\n',
        ),
        fee_micros=250,
        create_time=timestamp_pb2.Timestamp(seconds=1_735_689_600, nanos=5),
        nonce="n-1",
    )


def test_header_encoding_follows_the_documented_layout() -> None:
    encoded = canonical.encode_header(HEADER)
    assert encoded.hex() == HEADER_VECTOR
    assert len(encoded) == 106 + len("validator-1")
    assert canonical.header_hash(HEADER) == hashlib.sha256(encoded).hexdigest() == HEADER_HASH


def test_header_vector_of_an_empty_genesis() -> None:
    assert canonical.header_hash(EMPTY_GENESIS_HEADER) == EMPTY_GENESIS_HASH


def test_every_header_field_changes_the_hash() -> None:
    import dataclasses

    changes = {
        "height": 8,
        "previous_hash": "12" * 32,
        "merkle_root": "23" * 32,
        "block_time_seconds": 1_735_689_601,
        "block_time_nanos": 123_456_788,
        "slot": 4,
        "transaction_count": 3,
        "proposer_id": "validator-2",
    }
    hashes = {
        canonical.header_hash(dataclasses.replace(HEADER, **{k: v})) for k, v in changes.items()
    }
    assert HEADER_HASH not in hashes
    assert len(hashes) == len(changes)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("height", -1),
        ("previous_hash", "AB" * 32),
        ("merkle_root", "zz" * 32),
        ("block_time_nanos", 1_000_000_000),
        ("proposer_id", "Validator"),
        ("proposer_id", "x" * 65),
    ],
)
def test_headers_without_an_encoding_are_refused(field: str, value: object) -> None:
    import dataclasses

    with pytest.raises(canonical.EncodingError):
        canonical.encode_header(dataclasses.replace(HEADER, **{field: value}))


def test_transaction_canonical_json_vector() -> None:
    encoded = canonical.encode_message(canonical.TX_TAG, tx_body())
    assert encoded == TX_VECTOR
    assert canonical.sha256_hex(encoded) == TX_HASH
    assert canonical.decode_tagged(encoded, canonical.TX_TAG)["fee_micros"] == 250


def test_canonical_json_is_independent_of_field_order_and_omits_defaults() -> None:
    body = tx_body()
    reordered = pb.TransactionBody()
    reordered.nonce = body.nonce
    reordered.create_time.CopyFrom(body.create_time)
    reordered.fee_micros = body.fee_micros
    reordered.data_storage.CopyFrom(body.data_storage)
    reordered.type = body.type
    assert canonical.encode_message(canonical.TX_TAG, reordered) == TX_VECTOR
    plain = pb.TransactionBody(type=pb.TRANSACTION_TYPE_SYSTEM, system=pb.SystemPayload(action="a"))
    assert b"fee_micros" not in canonical.encode_message(canonical.TX_TAG, plain)


def test_struct_numbers_must_be_integers() -> None:
    params = struct_pb2.Struct()
    params.update({"n": 5, "list": [1, "x", None, True], "nested": {"k": -3}})
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_SYSTEM, system=pb.SystemPayload(action="a.b", parameters=params)
    )
    data = canonical.decode_tagged(
        canonical.encode_message(canonical.TX_TAG, body), canonical.TX_TAG
    )
    assert data["system"]["parameters"] == {
        "n": 5,
        "list": [1, "x", None, True],
        "nested": {"k": -3},
    }
    body.system.parameters.update({"f": 0.5})
    with pytest.raises(canonical.EncodingError, match="integers"):
        canonical.encode_message(canonical.TX_TAG, body)
    body.system.parameters.update({"f": 2.0**60})
    with pytest.raises(canonical.EncodingError):
        canonical.encode_message(canonical.TX_TAG, body)


def test_unknown_fields_have_no_encoding() -> None:
    body = tx_body()
    raw = body.SerializeToString() + b"\xa8\x06\x01"  # field 101, varint 1
    parsed = pb.TransactionBody()
    parsed.ParseFromString(raw)
    with pytest.raises(canonical.EncodingError, match="does not know"):
        canonical.encode_message(canonical.TX_TAG, parsed)


def test_tags_are_one_line() -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.encode_message(b"no newline", tx_body())
    with pytest.raises(canonical.EncodingError):
        canonical.decode_tagged(TX_VECTOR, canonical.VOTE_TAG)


def test_signed_messages_are_domain_separated() -> None:
    digest = "33" * 32
    proposal = canonical.proposal_message(digest)
    prevote = canonical.prevote_message(5, 2, digest)
    approval = canonical.approval_message(5, 2, digest)
    assert proposal.hex() == "6c756369645f626c6f636b732f70726f706f73616c2f763100" + digest
    assert prevote.hex() == (
        "6c756369645f626c6f636b732f707265766f74652f76310000000000000000050000000000000002" + digest
    )
    assert approval.startswith(b"lucid_blocks/approval/v1\x00")
    assert len({proposal, prevote, approval, bytes.fromhex(digest)}) == 4
    assert canonical.approval_message(5, 3, digest) != approval
    assert canonical.approval_message(6, 2, digest) != approval


def _bodies() -> list[pb.TransactionBody]:
    params = struct_pb2.Struct()
    params.update({"n": 5, "list": [1, "x", None, True], "nested": {"k": -3}, "empty": {}})
    return [
        tx_body(),
        pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
            session_anchor=pb.SessionAnchorPayload(
                session_id="6f1c1c9e-8a4e-4d1a-9d43-2b1b8f0c0a11",
                merkle_root="cd" * 32,
                chunk_count=3,
                total_size_bytes=2**40,
                hash_algorithm=pb.HashAlgorithm.Value("HASH_ALGORITHM_SHA256"),
                manifest_signature="ef" * 64,
            ),
            create_time=timestamp_pb2.Timestamp(seconds=1_735_689_600, nanos=999_999_999),
        ),
        pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_CONSENSUS_VOTE,
            consensus_vote=pb.ConsensusVotePayload(
                voter_id="validator-2",
                vote_type=1,
                target_id="t",
                decision=1,
                reasoning="ok",
            ),
            fee_micros=1,
        ),
        pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SYSTEM,
            system=pb.SystemPayload(action="poot.beacon", parameters=params),
        ),
        pb.TransactionBody(type=pb.TRANSACTION_TYPE_SYSTEM, system=pb.SystemPayload()),
    ]


@pytest.mark.parametrize("index", range(5))
def test_reading_canonical_data_gives_what_json_format_gives(index: int) -> None:
    body = _bodies()[index]
    data = canonical.decode_tagged(
        canonical.encode_message(canonical.TX_TAG, body), canonical.TX_TAG
    )
    read = pb.TransactionBody()
    canonical.from_canonical_data(data, read)
    expected = pb.TransactionBody()
    json_format.ParseDict(data, expected)
    assert read == expected == body
    assert read.WhichOneof("payload") == body.WhichOneof("payload")
    assert canonical.encode_message(canonical.TX_TAG, read) == canonical.encode_message(
        canonical.TX_TAG, body
    )


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"no_such_field": 1},
        {"type": "TRANSACTION_TYPE_NOPE"},
        {"type": 2},
        {"fee_micros": "250"},
        {"fee_micros": True},
        {"fee_micros": 2**64},
        {"nonce": 5},
        {"create_time": 5},
        {"create_time": "yesterday"},
        {"data_storage": {"size_bytes": 1}, "system": {"action": "a"}},
        {"data_storage": []},
        {"system": {"parameters": 5}},
    ],
)
def test_canonical_data_of_the_wrong_shape_is_refused(data: object) -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.from_canonical_data(data, pb.TransactionBody())


@pytest.mark.parametrize(
    "text",
    [
        "1970-01-01T00:00:00.000000000Z",
        "1969-12-31T23:59:59.999999999Z",
        "0001-01-01T00:00:00.000000000Z",
        "2024-02-29T12:34:56.000000001Z",
        "9999-12-31T23:59:59.999999999Z",
        "2025-01-01T00:00:00Z",  # not canonical: read as json_format reads it
        "2025-01-01T01:00:00+01:00",
    ],
)
def test_timestamps_read_as_json_format_reads_them(text: str) -> None:
    read = pb.TransactionBody()
    canonical.from_canonical_data({"create_time": text}, read)
    expected = timestamp_pb2.Timestamp()
    expected.FromJsonString(text)
    assert read.create_time == expected


@pytest.mark.parametrize(
    "text", ["2025-13-01T00:00:00.000000000Z", "2025-02-30T00:00:00.000000000Z", "2025-01-01"]
)
def test_impossible_timestamps_are_refused(text: str) -> None:
    with pytest.raises(canonical.EncodingError):
        canonical.from_canonical_data({"create_time": text}, pb.TransactionBody())
