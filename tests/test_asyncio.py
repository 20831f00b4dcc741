"""asyncio: recv_async, async for and wait_for_change_async inside a real event loop."""

from __future__ import annotations

import asyncio
import resource
import time

import numpy as np
import pytest

import shmchan

from peers import STATE_DTYPE


async def _ticker(stop: asyncio.Event, ticks: list[int]) -> None:
    """Another task on the same loop: it only gets to run if the loop is never blocked."""
    while not stop.is_set():
        ticks[0] += 1
        await asyncio.sleep(0.001)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def test_recv_async_waits_without_blocking_the_loop(unique_name: str, spawn) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=8) as ch:
        r = ch.reader()

        async def main() -> tuple[bytes, int, float]:
            stop, ticks = asyncio.Event(), [0]
            tick = asyncio.create_task(_ticker(stop, ticks))
            peer = spawn("send", unique_name, 3, "close")  # a writer in another process, a bit later
            t0 = time.monotonic()
            msg = await r.recv_async(timeout=20)
            waited = time.monotonic() - t0
            with msg:
                data = msg.tobytes()
            stop.set()
            await tick
            assert peer.finish()[0] == 0
            return data, ticks[0], waited

        data, ticks, waited = asyncio.run(main())
        assert data == b"msg-0"
        assert ticks >= 5, f"the loop ran the other task only {ticks} times in {waited:.3f} s"
        assert [m.tobytes() for m in r] == [b"msg-1", b"msg-2"]


def test_async_for_until_the_writer_closes(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()

        async def produce() -> None:
            for i in range(50):
                await asyncio.sleep(0.0005 if i % 10 == 0 else 0)
                while True:
                    try:
                        w.send(b"%d" % i, timeout=0)
                        break
                    except shmchan.ChannelFullError:
                        await asyncio.sleep(0.001)
            w.close()

        async def consume() -> list[bytes]:
            return [m.tobytes() async for m in r]

        async def main() -> list[bytes]:
            got, _ = await asyncio.gather(consume(), produce())
            return got

        assert asyncio.run(main()) == [b"%d" % i for i in range(50)]


def test_broadcast_readers_in_one_loop(unique_name: str) -> None:
    """Three broadcast readers (three handles) awaiting in one loop, all woken by each commit."""
    with shmchan.Broadcast.create(unique_name, slot_size=64, capacity=8, max_readers=3) as b:
        w = b.writer()
        handles = [shmchan.Broadcast.open(unique_name) for _ in range(3)]
        readers = [h.reader(spin=0) for h in handles]

        async def consume(r: shmchan.Reader) -> list[bytes]:
            return [m.tobytes() async for m in r]

        async def main() -> list[list[bytes]]:
            tasks = [asyncio.create_task(consume(r)) for r in readers]
            for i in range(30):
                await asyncio.sleep(0.002)
                w.send(b"%d" % i, timeout=5)  # block policy: never more than 8 ahead of any reader
            w.close()
            return await asyncio.gather(*tasks)

        for got in asyncio.run(main()):
            assert got == [b"%d" % i for i in range(30)]
        for r, h in zip(readers, handles, strict=True):
            r.close()
            h.close()


def test_timeout_and_cancellation_lose_nothing(unique_name: str) -> None:
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        w, r = ch.writer(), ch.reader()

        async def main() -> bytes:
            with pytest.raises(shmchan.ChannelTimeoutError):
                await r.recv_async(timeout=0.05)
            with pytest.raises(shmchan.ChannelEmptyError):
                await r.recv_async(timeout=0)
            task = asyncio.create_task(r.recv_async())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            w.send(b"kept")
            msg = await r.recv_async(timeout=5)  # the cancelled wait took nothing
            with msg:
                return msg.tobytes()

        assert asyncio.run(main()) == b"kept"


def test_an_idle_wait_does_not_poll(unique_name: str) -> None:
    """Waiting a second for a message that never comes uses next to no CPU: the wait sleeps in
    the kernel, no thread polls."""
    with shmchan.Channel.create(unique_name, slot_size=64, capacity=4) as ch:
        ch.writer()
        r = ch.reader()

        async def main() -> None:
            with pytest.raises(shmchan.ChannelTimeoutError):
                await r.recv_async(timeout=1.0)

        c0 = _cpu()
        asyncio.run(main())
        used = _cpu() - c0
        assert used < 0.3, f"an idle 1 s wait used {used:.3f} s of CPU"


def test_closing_the_channel_ends_a_pending_wait(unique_name: str) -> None:
    ch = shmchan.Channel.create(unique_name, slot_size=64, capacity=4)
    r = ch.reader()

    async def main() -> None:
        task = asyncio.create_task(r.recv_async())
        await asyncio.sleep(0.05)  # parked in C on a helper thread
        t0 = time.monotonic()
        ch.close()  # must not unmap under the parked thread: wakes it and waits for it
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(shmchan.ChannelClosedError):
            await task

    asyncio.run(main())


def test_wait_for_change_async(unique_name: str, spawn) -> None:
    with shmchan.State.create(unique_name, dtype=STATE_DTYPE) as st:

        async def main() -> tuple[int, int]:
            stop, ticks = asyncio.Event(), [0]
            tick = asyncio.create_task(_ticker(stop, ticks))
            with pytest.raises(shmchan.ChannelTimeoutError):
                await st.wait_for_change_async(0, timeout=0.05)
            peer = spawn("state_writer", unique_name, 1, 200_000)  # publishes after 0.2 s
            version = await st.wait_for_change_async(0, timeout=20)
            stop.set()
            await tick
            peer.expect("done")
            peer.kill()
            with pytest.raises(shmchan.PeerDeadError):
                await st.wait_for_change_async(version, timeout=20)
            return version, ticks[0]

        version, ticks = asyncio.run(main())
        assert version == 1
        assert ticks >= 5
        value, v = st.read()
        assert v == 1 and int(value["n"]) == 1


def test_state_wait_async_many_waiters(unique_name: str) -> None:
    with shmchan.State.create(unique_name, dtype=np.int64) as st:
        w = st.writer()

        async def main() -> list[int]:
            waits = [asyncio.create_task(st.wait_for_change_async(0, timeout=10)) for _ in range(20)]
            await asyncio.sleep(0.05)
            w.write(42)
            return await asyncio.gather(*waits)

        assert asyncio.run(main()) == [1] * 20
