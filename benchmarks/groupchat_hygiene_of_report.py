"""Reply hygiene of a group-chat story report (the HTML `sopgraph groupchat` writes), for reports made before
the lines carried their checks: leak, refusal, self-repeat, copy and silence rates and distinct-2 of the
transcript, with the same detectors the eval uses (echo needs the prompts, so it is not measured here).

    python benchmarks/groupchat_hygiene_of_report.py docs/results/groupchat-philosophers-local/baseline.html
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from sopgraph.nodes.groupchat import hygiene
from sopgraph.nodes.groupchat.prompts import INSTRUCTIONS, SILENT
from sopgraph.state.pool import Message

_LINE = re.compile(
    r'<div class="line"><span class="who">(?P<who>[^<]*)</span>(?: → (?P<to>[^:<]*))?: (?P<text>.*?)'
    r'<span class="badge (?P<badge>\w+)"'
)


def lines(report: str) -> list[Message]:
    out = []
    for i, m in enumerate(_LINE.finditer(report)):
        kind = "group_chat" if m["badge"] == "public" else "private_chat"
        to = (html.unescape(m["to"]),) if m["to"] else None
        out.append(
            Message(id=f"l{i}", sender=html.unescape(m["who"]), send_to=to, kind=kind, content=html.unescape(m["text"]))
        )
    return out


def main(path: str) -> None:
    said = lines(Path(path).read_text(encoding="utf-8"))
    if not said:
        raise SystemExit(f"{path}: no transcript lines found")
    rates = hygiene.measure(said, SILENT, INSTRUCTIONS)
    print(f"{path}: {rates.turns} spoken turns")
    for name, value in rates.rates().items():
        if name not in ("echo_rate", "echo_leak_rate"):
            print(f"  {name:18} {value:.3f}")


DEFAULT = Path(__file__).resolve().parent.parent / "docs/results/groupchat-philosophers-local/baseline.html"

if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit("usage: groupchat_hygiene_of_report.py [REPORT.html]")
    main(sys.argv[1] if len(sys.argv) == 2 else str(DEFAULT))
