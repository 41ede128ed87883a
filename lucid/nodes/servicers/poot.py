"""PootService and WorkCreditService: PoOT validation, task proofs and work credits."""

from __future__ import annotations

import grpc

from lucid.lib.ids import new_id
from lucid.nodes import convert
from lucid.nodes.credits import WorkCredits
from lucid.nodes.limits import RateLimiter
from lucid.nodes.servicers.nodes import caller
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.nodes.v1 import poot_pb2_grpc
from lucid.nodes.validation import Submission, Validator
from lucid.nodes.workproofs import WorkProofs
from lucid.runtime import paging, wire


def submission(item: tpb.ValidatePootRequest | tpb.BatchPootItem) -> Submission:
    """A request item as the validator takes it."""
    return Submission(
        node_id=item.node_id,
        output_data=item.output_data,
        output_time=wire.moment(item.output_time),
        nonce=item.nonce,
    )


class PootServiceServicer(poot_pb2_grpc.PootServiceServicer):
    """Translates PootService calls to the validator (rate limited: 100 a minute)."""

    def __init__(self, validator: Validator, limiter: RateLimiter) -> None:
        self.validator = validator
        self.limiter = limiter

    async def GetPootScore(
        self, request: tpb.GetPootScoreRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetPootScoreResponse:
        latest = await self.validator.latest(request.node_id, caller(context))
        if latest is None:
            return tpb.GetPootScoreResponse(
                node_id=request.node_id, status=tpb.POOT_STATUS_PENDING, confidence=0.5
            )
        return tpb.GetPootScoreResponse(
            node_id=request.node_id,
            score=latest.score,
            output_hash=latest.output_hash,
            status=latest.status,  # type: ignore[arg-type]
            confidence=latest.confidence,
            latest=convert.validation(latest),
        )

    async def ValidatePoot(
        self, request: tpb.ValidatePootRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ValidatePootResponse:
        who = caller(context)
        await self.limiter.check("poot", who.display)
        record = await self.validator.validate(submission(request), who)
        return tpb.ValidatePootResponse(validation=convert.validation(record))

    async def BatchValidatePoot(
        self, request: tpb.BatchValidatePootRequest, context: grpc.aio.ServicerContext
    ) -> tpb.BatchValidatePootResponse:
        who = caller(context)
        await self.limiter.check("poot", who.display)
        batch_id = request.batch_id or new_id()
        outcomes = await self.validator.batch([submission(i) for i in request.items], who, batch_id)
        results = [
            tpb.BatchPootResult(
                index=o.index,
                node_id=o.node_id,
                validation=convert.validation(o.validation) if o.validation else None,
                error=o.error,
            )
            for o in outcomes
        ]
        valid = sum(
            1 for o in outcomes if o.validation and o.validation.status == tpb.POOT_STATUS_VALID
        )
        errors = sum(1 for o in outcomes if o.validation is None)
        return tpb.BatchValidatePootResponse(
            batch_id=batch_id,
            results=results,
            summary=tpb.BatchPootSummary(
                total=len(outcomes),
                valid=valid,
                invalid=len(outcomes) - valid - errors,
                errors=errors,
            ),
        )

    async def GetPootHistory(
        self, request: tpb.GetPootHistoryRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetPootHistoryResponse:
        page = paging.page(request, scope=caller(context).user_id)
        records, total = await self.validator.history(
            request.node_id,
            status=request.status,
            start=wire.moment(request.start_time) if request.HasField("start_time") else None,
            end=wire.moment(request.end_time) if request.HasField("end_time") else None,
            caller=caller(context),
            offset=page.offset,
            limit=page.size,
        )
        return tpb.GetPootHistoryResponse(
            validations=[convert.validation(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )


class WorkCreditServiceServicer(poot_pb2_grpc.WorkCreditServiceServicer):
    """Translates WorkCreditService calls to the proof and credit domain."""

    def __init__(self, proofs: WorkProofs, credits: WorkCredits) -> None:
        self.proofs = proofs
        self.credits = credits

    async def SubmitWorkProof(
        self, request: tpb.SubmitWorkProofRequest, context: grpc.aio.ServicerContext
    ) -> tpb.SubmitWorkProofResponse:
        done = await self.proofs.submit(
            node_id=request.node_id,
            pool_id=request.pool_id,
            slot=request.slot,
            task_type=request.task_type,
            value=request.value,
            signature=request.signature,
            caller=caller(context),
            storage_answer=request.storage_answer,
            valid_item_ids=tuple(request.valid_item_ids),
            votes=tuple((v.item_id, v.signature) for v in request.votes),
        )
        return tpb.SubmitWorkProofResponse(
            proof_id=done.proof_id, credits=done.credits, epoch=done.epoch, vote_ids=done.vote_ids
        )

    async def GetWorkCredits(
        self, request: tpb.GetWorkCreditsRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetWorkCreditsResponse:
        report = await self.credits.report(
            node_id=request.node_id,
            pool_id=request.pool_id,
            epoch=request.epoch if request.HasField("epoch") else None,
            caller=caller(context),
        )
        return convert.credit_report(report)
