"""The reward join, free of I/O: serves and clicks in, rewards out.

One partition of the join holds, keyed by serve id:

    pending   serves whose attribution window is open, with the items clicked so far
    held      clicks that came before their serve, waiting for it
    closed    serves whose window has closed (tombstones, so a later click is late)

``JoinState`` is a view of that: the I/O layer loads what a batch touches (the
serves and held clicks its events name, and everything due to close) and
writes back what the view marks as changed.

The rules, for each event in arrival order and then at the batch's watermark:

- A click on a pending serve: a click after the window's end is late; an
  item not in the slate is refused; a second click on an item counts once;
  otherwise the item's reward is 1 at once (``rewarded_at`` = click time).
- A click on a closed serve is late. A click on an unknown serve is held.
- A serve opens its window (end = served time + the experiment's window) and
  takes its held clicks in order. A serve seen before is a duplicate.
- When the watermark passes a window's end, every item not clicked gets 0
  (``rewarded_at`` = the window's end) and the serve is closed. A held click
  whose grace period the watermark has passed is refused: no serve came.

All times are integer microseconds of event time, so the same events give the
same rewards whatever the wall clock or the batch boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cineamate.common.kafka import RawRecord, Rejected

__all__ = [
    "ClickIn",
    "ClosedServe",
    "JoinResult",
    "JoinState",
    "LateClickOut",
    "PendingServe",
    "RewardOut",
    "ServeIn",
    "join",
]

# (item id, position, propensity) of one slate entry.
SlateItem = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class ServeIn:
    """A serve, with the end of its attribution window already worked out."""

    serve_id: str
    experiment_id: str
    variant: str
    policy_type: str
    served_at: int
    window_end: int
    items: tuple[SlateItem, ...]
    source: RawRecord
    user_id: str = ""
    cohort: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ClickIn:
    """A click, with the record it came in (a held click may be refused much later)."""

    serve_id: str
    item_id: int
    user_id: str
    clicked_at: int
    source: RawRecord


@dataclass(slots=True)
class PendingServe:
    """A serve whose window is open and the items clicked in it so far."""

    serve_id: str
    experiment_id: str
    variant: str
    policy_type: str
    served_at: int
    window_end: int
    items: tuple[SlateItem, ...]
    clicked: list[int] = field(default_factory=list)
    user_id: str = ""
    cohort: tuple[tuple[str, str], ...] = ()

    def item(self, item_id: int) -> SlateItem | None:
        return next((entry for entry in self.items if entry[0] == item_id), None)


@dataclass(frozen=True, slots=True)
class RewardOut:
    """Outcomes decided together: one clicked item, or every item not clicked at the close."""

    serve: PendingServe
    items: tuple[SlateItem, ...]
    reward: float
    rewarded_at: int


@dataclass(frozen=True, slots=True)
class ClosedServe:
    """What is kept of a serve once its window closed (for a while): enough to say
    whose a late click is."""

    experiment_id: str
    variant: str
    window_end: int


@dataclass(frozen=True, slots=True)
class LateClickOut:
    """A click after its window, and the serve's experiment, variant and window end."""

    click: ClickIn
    experiment_id: str
    variant: str
    window_end: int


@dataclass
class JoinState:
    """A view of one join partition, recording what changed."""

    pending: dict[str, PendingServe] = field(default_factory=dict)
    held: dict[str, list[ClickIn]] = field(default_factory=dict)
    closed: dict[str, ClosedServe] = field(default_factory=dict)
    watermark: int = -(2**62)
    # What the I/O layer writes back.
    changed_pending: set[str] = field(default_factory=set)
    removed_pending: set[str] = field(default_factory=set)
    changed_held: set[str] = field(default_factory=set)
    removed_held: set[str] = field(default_factory=set)
    newly_closed: dict[str, ClosedServe] = field(default_factory=dict)
    # Closed serves past the retention: the I/O layer drops them.
    forgotten: list[str] = field(default_factory=list)

    def open(self, serve: PendingServe) -> None:
        self.pending[serve.serve_id] = serve
        self.changed_pending.add(serve.serve_id)
        self.removed_pending.discard(serve.serve_id)

    def touch(self, serve: PendingServe) -> None:
        self.changed_pending.add(serve.serve_id)

    def close(self, serve: PendingServe) -> None:
        del self.pending[serve.serve_id]
        self.changed_pending.discard(serve.serve_id)
        self.removed_pending.add(serve.serve_id)
        closed = ClosedServe(serve.experiment_id, serve.variant, serve.window_end)
        self.closed[serve.serve_id] = closed
        self.newly_closed[serve.serve_id] = closed

    def hold(self, click: ClickIn) -> None:
        self.held.setdefault(click.serve_id, []).append(click)
        self.changed_held.add(click.serve_id)
        self.removed_held.discard(click.serve_id)

    def release(self, serve_id: str) -> list[ClickIn]:
        clicks = self.held.pop(serve_id, [])
        if clicks:
            self.changed_held.discard(serve_id)
            self.removed_held.add(serve_id)
        return clicks

    def keep_held(self, serve_id: str, clicks: list[ClickIn]) -> None:
        if clicks:
            self.held[serve_id] = clicks
            self.changed_held.add(serve_id)
        else:
            self.release(serve_id)


@dataclass
class JoinResult:
    """What a batch produced, in the order it was decided."""

    rewards: list[RewardOut] = field(default_factory=list)
    late: list[LateClickOut] = field(default_factory=list)
    refused: list[Rejected] = field(default_factory=list)
    duplicate_clicks: int = 0
    duplicate_serves: int = 0
    held_clicks: int = 0


def join(
    state: JoinState,
    events: Iterable[ServeIn | ClickIn],
    *,
    watermark: int,
    click_grace: int,
) -> JoinResult:
    """Apply ``events`` in order, then close what ``watermark`` (if later) has passed."""
    result = JoinResult()
    for event in events:
        if isinstance(event, ServeIn):
            _serve(state, event, result)
        else:
            _click(state, event, result)
    state.watermark = max(state.watermark, watermark)
    _close_windows(state, result)
    _expire_held(state, click_grace, result)
    return result


def _serve(state: JoinState, event: ServeIn, result: JoinResult) -> None:
    if event.serve_id in state.pending or event.serve_id in state.closed:
        result.duplicate_serves += 1
        return
    serve = PendingServe(
        event.serve_id,
        event.experiment_id,
        event.variant,
        event.policy_type,
        event.served_at,
        event.window_end,
        event.items,
        user_id=event.user_id,
        cohort=event.cohort,
    )
    state.open(serve)
    for click in state.release(event.serve_id):
        _click_on(state, serve, click, result)


def _click(state: JoinState, click: ClickIn, result: JoinResult) -> None:
    serve = state.pending.get(click.serve_id)
    if serve is not None:
        _click_on(state, serve, click, result)
    elif click.serve_id in state.closed:
        closed = state.closed[click.serve_id]
        result.late.append(
            LateClickOut(click, closed.experiment_id, closed.variant, closed.window_end)
        )
    else:
        state.hold(click)
        result.held_clicks += 1


def _click_on(state: JoinState, serve: PendingServe, click: ClickIn, result: JoinResult) -> None:
    entry = serve.item(click.item_id)
    if click.clicked_at > serve.window_end:
        result.late.append(
            LateClickOut(click, serve.experiment_id, serve.variant, serve.window_end)
        )
    elif entry is None:
        result.refused.append(
            Rejected(
                click.source,
                "invalid.click_item",
                f"item {click.item_id} was not in the slate of serve {serve.serve_id!r}",
            )
        )
    elif click.item_id in serve.clicked:
        result.duplicate_clicks += 1
    else:
        serve.clicked.append(click.item_id)
        state.touch(serve)
        result.rewards.append(RewardOut(serve, (entry,), 1.0, click.clicked_at))


def _close_windows(state: JoinState, result: JoinResult) -> None:
    due = sorted(
        (serve for serve in state.pending.values() if serve.window_end < state.watermark),
        key=lambda serve: (serve.window_end, serve.serve_id),
    )
    for serve in due:
        unclicked = tuple(entry for entry in serve.items if entry[0] not in serve.clicked)
        if unclicked:
            result.rewards.append(RewardOut(serve, unclicked, 0.0, serve.window_end))
        state.close(serve)


def _expire_held(state: JoinState, click_grace: int, result: JoinResult) -> None:
    for serve_id in sorted(state.held):
        clicks = state.held[serve_id]
        kept = [c for c in clicks if c.clicked_at + click_grace >= state.watermark]
        if len(kept) == len(clicks):
            continue
        for click in clicks:
            if click.clicked_at + click_grace < state.watermark:
                result.refused.append(
                    Rejected(
                        click.source,
                        "invalid.click_orphan",
                        f"no serve {serve_id!r} arrived within "
                        f"{click_grace / 1_000_000:g} s of the click",
                    )
                )
        state.keep_held(serve_id, kept)
