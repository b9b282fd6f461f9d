"""Codec throughput: ``.venv/bin/python -m tests.transport.bench_codec`` (not collected by pytest).

Prints messages/s for encode, decode and both, per batch size (messages per frame), as the
median of 3 runs. The mix is what a busy leader's link carries: Accept (one command each),
Accepted, Heartbeat and HeartbeatAck in equal parts; "batched" is Accepts carrying 64 commands.
"""

from __future__ import annotations

import statistics
import time

from consensus.core.ballot import Ballot
from consensus.core.messages import Accept, Accepted, Command, Heartbeat, HeartbeatAck, Message
from consensus.transport.codec import decode_frame, encode_frame

BALLOT = Ballot(7, 1)
PAYLOAD = '{"type": "put", "key": "user:42", "value": "some value"}'


def mixed(count: int) -> list[Message]:
    out: list[Message] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            value = (Command(f"req-{i}", PAYLOAD),)
            out.append(
                Accept(group_id=1, src=1, dst=2, ballot=BALLOT, instance=i, value=value,
                       chosen_upto=i - 1 if i else 0)
            )  # fmt: skip
        elif kind == 1:
            out.append(Accepted(group_id=1, src=1, dst=2, ballot=BALLOT, instance=i))
        elif kind == 2:
            out.append(Heartbeat(group_id=1, src=1, dst=2, ballot=BALLOT, chosen_upto=i, seq=i))
        else:
            out.append(HeartbeatAck(group_id=1, src=1, dst=2, ballot=BALLOT, seq=i, chosen_upto=i))
    return out


def batched(count: int) -> list[Message]:
    value = tuple(Command(f"req-{i}", PAYLOAD) for i in range(64))
    return [
        Accept(group_id=1, src=1, dst=2, ballot=BALLOT, instance=i, value=value, chosen_upto=i)
        for i in range(count)
    ]


def measure(messages: list[Message], total: int = 200_000) -> tuple[float, float, int]:
    frame = encode_frame(messages)
    assert decode_frame(frame) == messages
    repeats = max(1, total // len(messages))
    start = time.perf_counter()
    for _ in range(repeats):
        encode_frame(messages)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        decode_frame(frame)
    decode_seconds = time.perf_counter() - start
    count = repeats * len(messages)
    return count / encode_seconds, count / decode_seconds, len(frame)


def main() -> None:
    print(f"{'workload':>9} {'msgs/frame':>10} {'bytes':>8} {'encode/s':>11} {'decode/s':>11} "
          f"{'enc+dec/s':>11}")  # fmt: skip
    for name, build, sizes, total in (
        ("mixed", mixed, (1, 10, 100, 1000), 200_000),
        ("batched", batched, (1, 10), 5_000),
    ):
        for size in sizes:
            runs = [measure(build(size), total) for _ in range(3)]
            encode = statistics.median(r[0] for r in runs)
            decode = statistics.median(r[1] for r in runs)
            both = statistics.median(1 / (1 / r[0] + 1 / r[1]) for r in runs)
            print(f"{name:>9} {size:>10} {runs[0][2]:>8} {encode:>11,.0f} {decode:>11,.0f} "
                  f"{both:>11,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
