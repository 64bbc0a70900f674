"""Consumer services SIGKILLed in the middle of a stream end with every count exact.

Serves and clicks with a known answer (``cineamate.reward.synthetic``: from the
stream follow every reward, every posterior count and every analytics total),
100,000 events, go through the reward, policy and analytics services while each
is SIGKILLed in turn, with records of its input still unprocessed, and
restarted. The rewards emitted (by id, never two values for one), the learner's
posteriors and the analytics aggregates then equal the truth exactly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fault_streams import Truth, backlog, make_pipeline, make_stream, wait_for_truth

from cineamate.stack.testing import produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_each_consumer_service_killed_mid_stream_ends_exact(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    pipeline = make_pipeline(isolated_env, tmp_path, CINEAMATE_REWARD_CLICK_GRACE_SECONDS="2")
    stream = make_stream(pipeline.experiment_id, serves=62_000)
    assert len(stream.events) >= 100_000
    # When each is killed: a share of the records its group has to read by the end.
    reward_messages = len(stream.rewards())
    schedule = [
        ("reward", 0.25 * len(stream.events)),
        ("policy", 0.2 * reward_messages),
        ("analytics", 0.3 * (len(stream.events) + reward_messages)),
    ]
    killed_at: list[tuple[str, int, int]] = []
    # The whole stream is in the topics before the services start: with the inputs of the
    # join written one after the other, one would look idle and hold the watermark no more.
    asyncio.run(produce(pipeline.bootstrap, pipeline.messages(stream)))
    pipeline.start("reward", "policy", "analytics")
    try:
        for service, threshold in schedule:
            # Past its threshold and with records left: a service that keeps up with its
            # input (analytics reads rewards as the reward service writes them) is killed
            # while a batch is still uncommitted, not between two.
            done, end = wait_until(
                f"{service} to get {threshold:.0f} records in, with more to read",
                lambda s=service, t=threshold: (
                    (b := asyncio.run(backlog(pipeline, s)))[0] >= t and b[0] < b[1] and b
                ),
                timeout=120,
            )
            pipeline.kill_and_restart(service)
            killed_at.append((service, done, end))
        wait_for_truth(pipeline, Truth.of(stream))
    finally:
        pipeline.stop()
    print(f"killed (service, committed, in its topics): {killed_at}")
    # Each was killed with records left to process: in the middle of its stream.
    assert all(done < end for _, done, end in killed_at), killed_at
