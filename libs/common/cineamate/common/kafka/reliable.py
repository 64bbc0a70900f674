"""Publishing that never blocks a request and never drops an event.

Messages go to the producer's in-memory buffer while the broker is healthy.
When the buffer is full or a delivery fails, the publisher switches to the
local spool: that message and every later one are appended there (so the
order is kept from then on), and a background task drains the spool to the
broker in order once it answers again, then switches back.
"""

from __future__ import annotations

import asyncio
import logging

from cineamate.common.errors import DependencyUnavailable
from cineamate.common.kafka.producer import EventProducer, OutgoingMessage
from cineamate.common.kafka.spool import Spool
from cineamate.common.metrics import SPOOLED_MESSAGES

__all__ = ["ReliablePublisher"]

_log = logging.getLogger(__name__)


class ReliablePublisher:
    """Fire-and-forget publishing backed by a spool; ``run`` drains the spool.

    >>> publisher = ReliablePublisher(producer, Spool(Path(".cineamate/spool")))  # doctest: +SKIP
    >>> publisher.publish(OutgoingMessage.of("serves", serve))  # doctest: +SKIP
    """

    def __init__(
        self,
        producer: EventProducer,
        spool: Spool,
        *,
        batch_size: int = 1_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self._producer = producer
        self._spool = spool
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._spooling = spool.pending > 0
        self._wake = asyncio.Event()
        producer.on_undelivered = self._spool_message
        SPOOLED_MESSAGES.set(spool.pending)

    @property
    def spooled(self) -> int:
        """Messages waiting in the spool."""
        return self._spool.pending

    def publish(self, message: OutgoingMessage) -> None:
        """Hand a message over without waiting; it reaches the broker eventually."""
        if self._spooling or not self._producer.publish(message):
            self._spool_message(message)

    async def run(self) -> None:
        """Drain the spool whenever it has messages, until cancelled."""
        while True:
            if not self._spooling:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._drain()
            except DependencyUnavailable as exc:
                _log.warning(
                    "broker unreachable; events kept in the spool",
                    extra={"spooled": self._spool.pending, "error": str(exc)},
                )
                await asyncio.sleep(self._retry_seconds)

    async def _drain(self) -> None:
        while True:
            batch, cursor = self._spool.read_batch(self._batch_size)
            if not batch:
                self._spooling = False
                SPOOLED_MESSAGES.set(0)
                _log.info("spool drained")
                return
            await asyncio.wait_for(self._producer.send_many(batch), timeout=30)
            self._spool.commit(cursor)
            SPOOLED_MESSAGES.set(self._spool.pending)

    def _spool_message(self, message: OutgoingMessage) -> None:
        self._spool.append(message)
        SPOOLED_MESSAGES.set(self._spool.pending)
        if not self._spooling:
            self._spooling = True
            self._wake.set()
