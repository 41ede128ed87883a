"""``lucid.mesh.v1.MessagingService``: messages (MongoDB + Redis Streams) and events
(Redis Streams). The streaming rpcs poll here; what is delivered is the domain's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from lucid.mesh import convert
from lucid.mesh.messaging import Messaging
from lucid.mesh.v1 import messaging_pb2, messaging_pb2_grpc
from lucid.runtime.context import current_principal
from lucid.runtime.wire import timestamp

POLL_S = 0.2


class MessagingServicer(messaging_pb2_grpc.MessagingServiceServicer):
    """Translates the messaging rpcs to the messaging service."""

    def __init__(self, messaging: Messaging) -> None:
        self.messaging = messaging

    async def SendMessage(
        self, request: messaging_pb2.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.SendMessageResponse:
        doc = await self.messaging.send(request, current_principal())
        return messaging_pb2.SendMessageResponse(
            message_id=doc["message_id"],
            status=convert.STATUS_VALUES[doc["status"]],
            expire_time=timestamp(doc["expire_at"]),
        )

    async def GetMessageStatus(
        self, request: messaging_pb2.GetMessageStatusRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.GetMessageStatusResponse:
        doc = await self.messaging.status(request.message_id)
        return messaging_pb2.GetMessageStatusResponse(message=convert.message(doc, payload=False))

    async def ReceiveMessages(
        self, request: messaging_pb2.ReceiveMessagesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[messaging_pb2.ReceiveMessagesResponse]:
        size = request.batch_size or 1
        while not context.cancelled():  # a cancelled client must not take more messages
            taken = await self.messaging.receive(request.destination, request.consumer_id, size)
            if taken:
                yield messaging_pb2.ReceiveMessagesResponse(
                    messages=[convert.message(d, payload=True) for d in taken]
                )
            else:
                await asyncio.sleep(POLL_S)

    async def AckMessage(
        self, request: messaging_pb2.AckMessageRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.AckMessageResponse:
        status = await self.messaging.ack(
            request.message_id, request.success, request.error_message
        )
        return messaging_pb2.AckMessageResponse(status=convert.STATUS_VALUES[status])

    async def PublishEvent(
        self, request: messaging_pb2.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.PublishEventResponse:
        event = await self.messaging.publish(request, current_principal())
        return messaging_pb2.PublishEventResponse(
            event_id=event.event_id, publish_time=timestamp(event.time_s)
        )

    async def SubscribeEvents(
        self, request: messaging_pb2.SubscribeEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[messaging_pb2.SubscribeEventsResponse]:
        sub = self.messaging.subscription(request, current_principal())
        pull = request.delivery_mode == messaging_pb2.DELIVERY_MODE_PULL
        while not context.cancelled():  # a cancelled client must not claim more events
            batch = await self.messaging.next_batch(sub, pull=pull)
            if batch.events:
                yield messaging_pb2.SubscribeEventsResponse(
                    events=[convert.event(e) for e in batch.events]
                )
            elif batch.done:
                return
            elif batch.idle:
                await asyncio.sleep(POLL_S)

    async def AckEvent(
        self, request: messaging_pb2.AckEventRequest, context: grpc.aio.ServicerContext
    ) -> messaging_pb2.AckEventResponse:
        acked = await self.messaging.ack_events(
            request.consumer_group, list(request.event_ids), current_principal()
        )
        return messaging_pb2.AckEventResponse(acked_count=acked)
