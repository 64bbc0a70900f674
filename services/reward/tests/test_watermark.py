"""The watermark: held back by the slowest active input, moved on by the wall clock when idle."""

from __future__ import annotations

from cineamate.reward.watermark import MICROS, InputClock, watermark

IDLE = 5.0
LATENESS = 2 * MICROS
START = -(2**62)


def _mark(clocks: list[InputClock], now: float, previous: int = START) -> int:
    return watermark(clocks, now=now, previous=previous, idle_after=IDLE, allowed_lateness=LATENESS)


def test_the_slowest_active_input_holds_the_watermark_back() -> None:
    serves = InputClock(100 * MICROS, last_delivery=10.0)
    clicks = InputClock(40 * MICROS, last_delivery=10.0)

    assert _mark([serves, clicks], now=11.0) == 38 * MICROS


def test_an_active_input_that_showed_nothing_yet_stops_the_watermark() -> None:
    serves = InputClock(100 * MICROS, last_delivery=10.0)
    clicks = InputClock(None, last_delivery=10.0)

    assert _mark([serves, clicks], now=11.0, previous=7) == 7


def test_an_idle_input_no_longer_holds_the_watermark_back() -> None:
    serves = InputClock(100 * MICROS, last_delivery=10.0)
    clicks = InputClock(40 * MICROS, last_delivery=1.0, caught_up=True)

    assert _mark([serves, clicks], now=11.0) == 98 * MICROS


def test_an_input_with_a_backlog_is_never_idle() -> None:
    # Quiet only because the consumer was busy with other partitions: still holds it back.
    serves = InputClock(100 * MICROS, last_delivery=10.0)
    clicks = InputClock(40 * MICROS, last_delivery=1.0, caught_up=False)

    assert _mark([serves, clicks], now=11.0) == 38 * MICROS


def test_with_every_input_idle_the_watermark_follows_the_wall_clock() -> None:
    serves = InputClock(100 * MICROS, last_delivery=10.0, caught_up=True)
    clicks = InputClock(None, last_delivery=0.0, caught_up=True)

    assert _mark([serves, clicks], now=14.0) == 98 * MICROS  # not idle for long enough yet
    assert _mark([serves, clicks], now=25.0) == (100 + 10 - 2) * MICROS


def test_the_watermark_never_goes_back() -> None:
    serves = InputClock(100 * MICROS, last_delivery=10.0)
    clicks = InputClock(40 * MICROS, last_delivery=10.0)

    assert _mark([serves, clicks], now=11.0, previous=90 * MICROS) == 90 * MICROS


def test_observing_keeps_the_latest_event_time() -> None:
    clock = InputClock(None, last_delivery=0.0)
    clock.observe(50, now=1.0)
    clock.observe(30, now=2.0)

    assert (clock.latest_event, clock.last_delivery) == (50, 2.0)
