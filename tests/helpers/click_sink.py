"""A consumer process for the pipeline test: clicks from Kafka into a PostgreSQL table.

Runs the common BatchConsumer as a service would: decode, process (idempotent
upsert), dead-letter, commit. A click on a negative item id is rejected by the
handler, the way a service rejects an event that decodes but makes no sense.

    python click_sink.py  (configured by environment: see main)
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg

from cineamate.common.errors import InvalidEvent
from cineamate.common.events import ClickEvent
from cineamate.common.kafka import BatchConsumer, EventProducer, Record, Rejected, json_decoder


async def main() -> None:
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])
    producer = EventProducer(os.environ["KAFKA_BOOTSTRAP_SERVERS"], client_id="click-sink")
    await producer.start()

    async def handle(records: list[Record[ClickEvent]]) -> list[Rejected]:
        rejected = [
            Rejected.of(r, InvalidEvent("item_id must be >= 0", code="invalid.item"))
            for r in records
            if r.event.item_id < 0
        ]
        rows = [
            (
                r.event.event_id,
                r.event.serve_id,
                r.event.item_id,
                r.event.user_id,
                r.event.clicked_at,
            )
            for r in records
            if r.event.item_id >= 0
        ]
        await pool.executemany(
            "INSERT INTO sink_clicks (event_id, serve_id, item_id, user_id, clicked_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
            rows,
        )
        return rejected

    consumer = BatchConsumer(
        bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        topics=[os.environ["SINK_TOPIC"]],
        group_id=os.environ["SINK_GROUP"],
        decode=json_decoder(ClickEvent, max_bytes=10_000),
        handle=handle,
        dead_letters=producer,
        dead_letter_topic=os.environ["SINK_DEAD_LETTER_TOPIC"],
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.request_stop)
    print("sink ready", flush=True)
    try:
        await consumer.run()
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
