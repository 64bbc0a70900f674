"""Users, the planted click model, and a live run against a fake platform on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from cineamate.loadgen import ClickModel, LiveConfig, Population, run_live

ITEMS = np.arange(1, 21)
# Two cohorts; "good" serves items 1..5, whose planted probability is 1 for cohort 0.
PROBABILITY = np.vstack([np.where(ITEMS <= 5, 1.0, 0.1), np.full(ITEMS.size, 0.2)])


def _population() -> Population:
    activity = 1.0 / np.arange(1, 201)
    return Population(
        tuple(f"u{n}" for n in range(200)),
        activity,
        np.arange(200) % 2,
        ("F:18-24", "M:56+"),
    )


def test_users_are_drawn_by_activity_with_their_cohort_in_the_query() -> None:
    users = _population()
    counts = np.bincount(users.draw(100_000, np.random.default_rng(1)), minlength=200)
    expected = 100_000 * users.activity / users.activity.sum()
    # 100,000 draws: every count within 5 standard deviations of its binomial mean.
    assert (np.abs(counts - expected) <= 5 * np.sqrt(expected) + 1).all()
    assert counts[:10].sum() > counts[100:].sum()
    assert parse_qs(users.query(1)) == {"user_id": ["u1"], "gender": ["M"], "age": ["56+"]}


def test_the_click_model_scales_the_truth_and_knows_the_best_slate() -> None:
    model = ClickModel(ITEMS, PROBABILITY, attention=0.5, unknown=0.01)
    assert model.probabilities(0, [1, 6, 99]).tolist() == [0.5, 0.05, 0.005]
    assert model.best_ctr(0, 5) == 0.5
    assert model.best_ctr(1, 3) == pytest.approx(0.1)


class _FakePlatform:
    """Slates from two variants by user parity; clicks accepted and kept."""

    def __init__(self) -> None:
        self.clicks: list[dict[str, object]] = []
        self.serves = 0
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b"":
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {
                    name.lower(): value
                    for name, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if method == "POST":
                    self.clicks.extend(json.loads(body))
                    status, answer = "202 Accepted", b'{"accepted": 1}'
                else:
                    query = parse_qs(urlsplit(target).query)
                    good = int(query["user_id"][0][1:]) % 2 == 0
                    items = range(1, 6) if good else range(11, 16)
                    self.serves += 1
                    answer = json.dumps(
                        {
                            "serve_id": f"s{self.serves}",
                            "variant": "good" if good else "poor",
                            "items": [{"movie_id": item} for item in items],
                        }
                    ).encode()
                    status = "200 OK"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Length: {len(answer)}\r\n\r\n".encode() + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            # Closed here, on its own loop: a writer left to the collector warns later.
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_a_live_run_posts_the_drawn_clicks_and_names_the_planted_best_variant() -> None:
    platform = _FakePlatform()
    server = await platform.start()
    model = ClickModel(ITEMS, PROBABILITY, attention=0.5)
    config = LiveConfig(port=platform.port, experiment_id="e1", rate=400, duration=1.0, seed=3)
    async with server:
        report = await run_live(config, _population(), model)
    assert report.load.ok == 400 and platform.serves == 400
    assert report.clicks_failed == 0
    assert (
        report.clicks_sent
        == len(platform.clicks)
        == sum(t.clicks for t in report.variants.values())
    )
    good, poor = report.variants["good"], report.variants["poor"]
    # Even users are cohort 0: "good" shows them items the truth rates 1, so 0.5 planted.
    assert good.planted_ctr == 0.5 and good.best_ctr == 0.5
    assert abs(poor.planted_ctr - 0.1) < 1e-12
    assert report.best_variant == "good" == report.best_variant_observed
    # About 1,000 shown items each: observed within 5 standard errors of planted.
    for tally in (good, poor):
        spread = np.sqrt(tally.planted_ctr * (1 - tally.planted_ctr) / tally.impressions)
        assert abs(tally.ctr - tally.planted_ctr) <= 5 * spread
    assert {click["serve_id"] for click in platform.clicks} <= {f"s{n}" for n in range(1, 401)}
