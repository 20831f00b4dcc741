"""Audio through a channel: PyAV decodes an audio stream, Audio messages carry it, a consumer
process re-encodes it and checks every sample.

    python examples/audio_channel.py [AUDIO_FILE]

Without a file, a two-second stereo tone is encoded here with PyAV (AAC in MP4). The producer sends
each decoded ``AudioFrame`` as an Audio message (sample format, planar layout, channel layout,
sample rate and pts travel with it); the consumer rebuilds PyAV frames from the messages
(shmchan.media.to_av_audio), compares the samples with the producer's checksum and encodes them
to Opus. Needs shmchan[media].
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import sys
import tempfile
import zlib
from pathlib import Path

import av
import numpy as np

import shmchan
from shmchan.media import send_av_audio, to_av_audio


def make_tone(path: Path, seconds: float = 2.0, rate: int = 48000) -> Path:
    with av.open(str(path), "w") as out:
        st = out.add_stream("aac", rate=rate)
        st.layout = "stereo"
        n, t = 1024, 0
        while t < seconds * rate:
            x = np.arange(t, t + n) / rate
            tone = np.stack([np.sin(2 * np.pi * 440 * x), np.sin(2 * np.pi * 660 * x)]).astype(np.float32) * 0.3
            f = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
            f.sample_rate, f.pts = rate, t
            for pkt in st.encode(f):
                out.mux(pkt)
            t += n
        for pkt in st.encode():
            out.mux(pkt)
    return path


def consumer(name: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    crc, blocks, samples = 0, 0, 0
    sink = io.BytesIO()
    with shmchan.Channel.open(name, schema="audio") as ch, ch.reader() as r, av.open(sink, "w", format="ogg") as enc:
        st = None
        for msg in r:
            af = to_av_audio(msg)  # decodes the message once, into a PyAV frame (a copy)
            crc = zlib.crc32(np.ascontiguousarray(af.to_ndarray()).data, crc)
            blocks, samples = blocks + 1, samples + af.samples
            if st is None:
                st = enc.add_stream("libopus", rate=48000)
                st.layout = af.layout.name
            af.pts = None
            for pkt in st.encode(af):
                enc.mux(pkt)
        if st is not None:
            for pkt in st.encode():
                enc.mux(pkt)
    out.put((blocks, samples, crc, sink.getbuffer().nbytes))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = sys.argv[1] if len(sys.argv) > 1 else str(make_tone(Path(tmp) / "tone.mp4"))
        name = f"example-audio-{os.getpid()}"
        ctx = mp.get_context("spawn")
        with av.open(path) as container, shmchan.Channel.create(name, slot_size=1 << 16, capacity=16,
                                                                schema="audio") as ch:
            stream = container.streams.audio[0]
            q = ctx.Queue()
            p = ctx.Process(target=consumer, args=(name, q))
            p.start()
            crc, blocks, samples = 0, 0, 0
            with ch.writer() as w:
                for af in container.decode(stream):
                    arr = af.to_ndarray()
                    crc = zlib.crc32(np.ascontiguousarray(arr).data, crc)
                    blocks, samples = blocks + 1, samples + af.samples
                    send_av_audio(w, af, timeout=30)
            got = q.get(timeout=60)
            p.join(30)
    print(f"sent {blocks} blocks, {samples} samples per channel (crc {crc:08x}); the consumer got {got[0]} blocks, "
          f"{got[1]} samples (crc {got[2]:08x}) and wrote {got[3]} bytes of Opus")
    return 0 if (blocks, samples, crc) == got[:3] and got[3] > 0 and p.exitcode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
