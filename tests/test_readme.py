"""The README's Broadcast and State examples run as written (with unique channel names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(section: str) -> str:
    text = README.read_text()
    start = text.index(section)
    m = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert m, f"no python example under {section!r}"
    return m.group(1)


@pytest.mark.parametrize(
    ("section", "names"),
    [("## Broadcast: one writer, many readers", ["cam0"]),
     ("## State boards: the latest value", ["robot.pose"])],
)
def test_readme_example_runs(section: str, names: list[str], unique_name: str) -> None:
    code = _example(section)
    for i, name in enumerate(names):
        assert f'"{name}"' in code
        code = code.replace(f'"{name}"', f'"{unique_name}-{i}"')
    ns: dict[str, object] = {}
    try:
        exec(compile(code, f"README {section}", "exec"), ns)
    finally:
        import gc

        import shmchan

        chans = [v for v in ns.values() if isinstance(v, shmchan.Channel)]
        ns.clear()  # views (arrays) the example kept go first
        gc.collect()
        for ch in chans:
            ch.close()
