"""Every test file that sleeps over half a second is listed in docs/testing.md with why, and
sleeps as many times as it says: time passes by the injected clock wherever it can."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLEEP = re.compile(r"(?:time|asyncio)\.sleep\(\s*([0-9.]+)\s*\)")
ROW = re.compile(r"^\| `(tests/[^`]+)` \| (\d+) \| (.+) \|$", re.M)


def test_every_long_sleep_is_listed_with_why() -> None:
    found: dict[str, int] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        count = sum(float(m.group(1)) > 0.499 for m in SLEEP.finditer(path.read_text()))
        if count:
            found[str(path.relative_to(ROOT))] = count
    listed = {m.group(1): int(m.group(2))
              for m in ROW.finditer((ROOT / "docs" / "testing.md").read_text())}
    assert found == listed
