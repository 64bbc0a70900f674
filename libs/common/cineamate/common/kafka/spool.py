"""A local append-only spool of messages that could not reach the broker.

Messages are framed into segment files (``000001.spool``, ...) and read back
in the order they were written. The read position of the oldest segment is
kept in ``position``, so after a restart draining resumes where it stopped; a
drained segment is deleted. A record torn by a crash mid-write is dropped when
it is read (it was never acknowledged to anyone). Delivery from the spool is
at least once: a crash between sending and saving the position sends the last
batch again, which consumers absorb through the events' deterministic ids.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from cineamate.common.kafka.producer import OutgoingMessage

__all__ = ["Spool"]

# topic length, key length (-1: no key), value length
_HEADER = struct.Struct(">HiI")


class Spool:
    """Append-only segment files in ``directory``.

    >>> spool = Spool(Path("/tmp/spool"))  # doctest: +SKIP
    >>> spool.append(OutgoingMessage("serves", b"{}", b"key"))  # doctest: +SKIP
    >>> batch, cursor = spool.read_batch(100); spool.commit(cursor)  # doctest: +SKIP
    """

    def __init__(self, directory: Path, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._write_segment = max(self._segments(), default=0)
        self._pending = self._count_pending()

    @property
    def pending(self) -> int:
        """Messages written and not yet drained."""
        return self._pending

    def append(self, message: OutgoingMessage) -> None:
        """Write one message (to the operating system's buffers before returning)."""
        topic = message.topic.encode()
        key = message.key
        frame = (
            _HEADER.pack(len(topic), -1 if key is None else len(key), len(message.value))
            + topic
            + (key or b"")
            + message.value
        )
        path = self._segment_path(self._write_segment)
        if self._write_segment == 0 or (
            path.exists() and path.stat().st_size + len(frame) > self._segment_bytes
        ):
            self._write_segment += 1
            path = self._segment_path(self._write_segment)
        with open(path, "ab") as out:
            out.write(frame)
        self._pending += 1

    def read_batch(self, max_records: int) -> tuple[list[OutgoingMessage], tuple[int, int]]:
        """Up to ``max_records`` of the oldest messages, and the cursor to commit after them."""
        segments = self._segments()
        if not segments:
            return [], (0, 0)
        segment = segments[0]
        offset = self._read_position(segment)
        data = self._segment_path(segment).read_bytes()
        messages: list[OutgoingMessage] = []
        while len(messages) < max_records and offset + _HEADER.size <= len(data):
            topic_len, key_len, value_len = _HEADER.unpack_from(data, offset)
            body = offset + _HEADER.size
            end = body + topic_len + max(key_len, 0) + value_len
            if end > len(data):
                break  # torn by a crash while writing
            topic = data[body : body + topic_len].decode()
            key = None if key_len < 0 else data[body + topic_len : body + topic_len + key_len]
            value = data[end - value_len : end]
            messages.append(OutgoingMessage(topic, value, key))
            offset = end
        return messages, (segment, offset)

    def commit(self, cursor: tuple[int, int]) -> None:
        """Mark everything before ``cursor`` as delivered."""
        segment, offset = cursor
        if segment == 0:
            return
        path = self._segment_path(segment)
        drained = self._count_frames(path.read_bytes(), self._read_position(segment), offset)
        self._pending = max(self._pending - drained, 0)
        finished = offset >= path.stat().st_size and segment != self._write_segment
        if finished or (offset >= path.stat().st_size and self._pending == 0):
            path.unlink()
            (self.directory / "position").unlink(missing_ok=True)
            if segment == self._write_segment:
                self._write_segment = max(self._segments(), default=0)
            return
        temporary = self.directory / "position.tmp"
        temporary.write_text(f"{segment} {offset}")
        os.replace(temporary, self.directory / "position")

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.spool") if p.stem.isdigit())

    def _segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:06d}.spool"

    def _read_position(self, segment: int) -> int:
        position = self.directory / "position"
        if position.exists():
            saved_segment, saved_offset = (int(x) for x in position.read_text().split())
            if saved_segment == segment:
                return saved_offset
        return 0

    def _count_pending(self) -> int:
        total = 0
        for segment in self._segments():
            data = self._segment_path(segment).read_bytes()
            total += self._count_frames(data, self._read_position(segment), len(data))
        return total

    @staticmethod
    def _count_frames(data: bytes, start: int, stop: int) -> int:
        count, offset = 0, start
        while offset + _HEADER.size <= stop:
            topic_len, key_len, value_len = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + topic_len + max(key_len, 0) + value_len
            if end > stop:
                break
            count, offset = count + 1, end
        return count
