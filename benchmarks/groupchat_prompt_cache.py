"""How much of a group-chat story's prompt text the embedded server can take from its prompt cache (offline).

Runs a story on the scripted model (replies at their longest, as groupchat_prompt_growth.py plays it), keeps
every model request in order with who asked, for which action, and in which LangGraph step and task, renders
each as the Qwen ChatML text llama.cpp's server tokenizes (the request the local provider would send, the
schema in words where a character's player puts it: nodes/llm.py `local_messages`), and replays the requests
against a model of the server as tools/local_model/runner.py configures it:

- `slots` request slots (the configured `parallel`). A request goes to the idle slot whose cached text shares
  the longest prefix with it, as a fraction of the request above `slot_prompt_similarity` (0.1), else to the
  least recently used idle slot. It reuses the common prefix of its text and what that slot last held (its
  last prompt and reply); the rest is prompt processing.
- llama.cpp's RAM prompt cache (`cache_ram_mib`, default 8 GiB: far more than a story): a request placed by
  least-recent use, or on a slot whose text it shares less than half of, first saves that slot's text to the
  cache and loads the cached text that beats the slot's on both kept fraction and similarity, keeping at
  least a quarter of it. With a unified KV pool (runner: kv_unified) and `cache_idle_slots` (default on),
  every other idle slot is saved to the cache and cleared whenever a request starts.
- `n_cache_reuse` (runner: 256 tokens): after the common prefix, later runs of at least that many tokens
  that the slot holds and the request repeats are shifted into place instead of recomputed.
- `id_slot` per character (the last variants printed): each character's requests name a slot (characters in
  scenario order modulo the slots); such a request waits for its slot, and goes through the RAM cache only
  when its slot's text is similar.

It prints the configured server first, then the same requests with one setting changed, each with the cached
share, uncached tokens and which actions send them; the layout's ceiling says what no server setting can beat.

Concurrency: the requests of one LangGraph step's tasks (the parallel `Send`s: updates, group-chat speakers,
summaries, votes) are concurrent, starting in the order of the step's `Send`s, and each task's own requests
(think, then speak; a re-ask) follow one another. Requests beyond the free slots wait in arrival order. Time
is processor sharing: every active request advances at 1/n of the CPU, needing its uncached prompt tokens at
the prompt rate plus its reply tokens at the generation rate (docs/RESULTS.md, 1 thread: 52 and 10.6 tok/s).
Tokens are characters / 3.5 (no tokenizer here); the fractions, which the server's rules compare, are the
same in characters.

    python benchmarks/groupchat_prompt_cache.py [--scenario philosophers] [--rounds 2] [--slots 4] [--show 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from sopgraph.nodes.groupchat.asking import SCHEMA_LAST
from sopgraph.nodes.llm import local_messages
from sopgraph.nodes.scripted import ScriptedRequest
from sopgraph.scenarios import load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from groupchat_prompt_growth import play, verbose  # noqa: E402  (a story with replies at their longest)
from groupchat_script import action_of, character_of  # noqa: E402  (the tests' scripted group chat)

CHARS_PER_TOKEN = 3.5
PROMPT_TOK_S = 52.0
"""Prompt processing of uncached tokens, 0.5B, 1 thread (docs/RESULTS.md, "Serving, re-measured")."""
GEN_TOK_S = 10.6
"""Decoding, same run."""
ROLES = {"system": "system", "human": "user", "ai": "assistant"}


@dataclasses.dataclass(frozen=True)
class Request:
    index: int
    step: int
    task: str
    send: int
    """The task's place among its step's `Send`s (the order the graph starts them in)."""
    character: str
    action: str
    text: str
    """The prompt as the server sees it (ChatML, ending where the assistant's reply starts)."""
    reply: str


def chatml(messages: Iterable[BaseMessage]) -> str:
    """Qwen2.5's chat template: each message in <|im_start|>role ... <|im_end|>, then the assistant's turn."""
    turns = [f"<|im_start|>{ROLES[m.type]}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join(turns) + "<|im_start|>assistant\n"


def as_served(request: ScriptedRequest) -> str:
    """The scripted request (function calling) as the local provider sends it (the schema in the system message)."""
    system = request.system or None
    rest = [m for m in request.messages if m.type != "system"]
    if request.schema is None:
        return chatml(request.messages)
    return chatml(local_messages(request.schema, rest, system, SCHEMA_LAST))


def capture(scenario_name: str, rounds: int) -> list[Request]:
    """Every model request of one story, in the order the graph made them."""
    scenario = load_scenario(scenario_name)
    book = verbose(scenario.settings.speech_words, scenario.settings.reflection_words)
    lock = threading.Lock()
    out: list[Request] = []

    def script(request: ScriptedRequest) -> Any:
        reply = book(request)
        meta = request.metadata
        with lock:
            out.append(
                Request(
                    index=len(out),
                    step=int(meta.get("langgraph_step", 0)),
                    task=str(meta.get("langgraph_checkpoint_ns", "")),
                    send=send_index(meta.get("langgraph_path")),
                    character=character_of(request),
                    action=action_of(request),
                    text=as_served(request),
                    reply=json.dumps(reply),
                )
            )
        return reply

    play(scenario, rounds, script)
    return out


def send_index(path: Any) -> int:
    """A pushed task's index among its step's `Send`s (LangGraph's task path); 0 for other tasks."""
    return int(path[1]) if isinstance(path, tuple) and len(path) > 1 and isinstance(path[1], int) else 0


def lcp(a: str, b: str) -> int:
    """Length of the common prefix (binary search over slice comparisons, which run in C)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclasses.dataclass(frozen=True)
class ServerModel:
    slots: int = 4
    similarity: float = 0.1
    ram_cache: bool = True
    idle_clear: bool = True
    cache_reuse: int = 256
    """Tokens; 0 turns KV-shift reuse off."""
    pin: bool = False

    def label(self) -> str:
        parts = [f"{self.slots} slots", "RAM cache" if self.ram_cache else "no RAM cache"]
        parts.append("idle slots saved+cleared" if self.idle_clear and self.ram_cache else "idle slots kept")
        parts.append(f"cache_reuse {self.cache_reuse}" if self.cache_reuse else "no cache_reuse")
        return ", ".join(parts + (["id_slot per character"] if self.pin else []))


@dataclasses.dataclass
class Slot:
    id: int
    text: str = ""
    last_used: float = -1.0
    busy: bool = False


@dataclasses.dataclass
class Served:
    request: Request
    cached: int
    """Characters of the request taken from the cache."""
    slot: int
    start: float = 0.0
    end: float = 0.0

    @property
    def uncached(self) -> int:
        return len(self.request.text) - self.cached


class Server:
    """The slots and RAM prompt cache of llama.cpp's server, at character granularity."""

    def __init__(self, model: ServerModel, characters: Sequence[str]) -> None:
        self.model = model
        self.slots = [Slot(i) for i in range(model.slots)]
        self.cache: list[str] = []
        self.home = {c: i % model.slots for i, c in enumerate(characters)}

    def free_slot(self, request: Request) -> Slot | None:
        """The slot the request would get now; None while it must wait."""
        idle = [s for s in self.slots if not s.busy]
        if self.model.pin:
            home = self.slots[self.home[request.character]]
            return None if home.busy else home
        return idle[0] if idle else None

    def launch(self, request: Request, now: float) -> Served:
        text = request.text
        chosen, update = self._choose(request)
        if update and self.model.ram_cache:
            self._save(chosen)
            self._load(chosen, text)
        chosen.busy = True
        if self.model.ram_cache and self.model.idle_clear:
            for slot in self.slots:
                if not slot.busy and slot.text:
                    self._save(slot)
                    slot.text = ""
        cached = self._reused(chosen.text, text)
        return Served(request, min(cached, len(text) - 1), chosen.id, start=now)

    def finish(self, served: Served, now: float) -> None:
        slot = self.slots[served.slot]
        slot.text = served.request.text + served.request.reply
        slot.last_used = now
        slot.busy = False

    def _choose(self, request: Request) -> tuple[Slot, bool]:
        text = request.text
        pinned = self.slots[self.home[request.character]] if self.model.pin else None
        candidates = [pinned] if pinned else [s for s in self.slots if not s.busy]
        best, best_sim = None, 0.0
        for slot in candidates:
            if slot is None or slot.busy or not slot.text:
                continue
            sim = lcp(slot.text, text) / len(text)
            if sim > best_sim and sim > self.model.similarity:
                best, best_sim = slot, sim
        if best is not None:
            keep = best_sim * len(text) / len(best.text)
            return best, keep < 0.5
        if pinned is not None:
            return pinned, False
        lru = min((s for s in self.slots if not s.busy), key=lambda s: s.last_used)
        return lru, True

    def _save(self, slot: Slot) -> None:
        text = slot.text
        if not text or any(lcp(entry, text) == len(text) for entry in self.cache):
            return
        self.cache = [entry for entry in self.cache if lcp(entry, text) < len(entry)]
        self.cache.append(text)

    def _load(self, slot: Slot, text: str) -> None:
        common = lcp(slot.text, text)
        keep_best = common / len(slot.text) if slot.text else -1.0
        sim_best = common / len(text)
        best = None
        for i, entry in enumerate(self.cache):
            common = lcp(entry, text)
            keep, sim = common / len(entry), common / len(text)
            if keep < 0.25:
                continue
            if keep_best < keep and sim_best < sim:
                keep_best, sim_best, best = keep, sim, i
        if best is not None:
            slot.text = self.cache.pop(best)

    def _reused(self, cached: str, text: str) -> int:
        n_past = lcp(cached, text)
        chunk = int(self.model.cache_reuse * CHARS_PER_TOKEN)
        if not chunk:
            return n_past
        head_c = head_p = n_past
        while head_c < len(cached) and head_p + chunk <= len(text):
            head_c = cached.find(text[head_p : head_p + chunk], head_c)
            if head_c < 0:
                break
            run = lcp(cached[head_c:], text[head_p:])
            n_past += run
            head_c += run
            head_p += run
        return n_past


def simulate(requests: Sequence[Request], model: ServerModel, characters: Sequence[str]) -> list[Served]:
    """Replay the requests step by step: a step's tasks concurrently, each task's requests in order."""
    server = Server(model, characters)
    steps: dict[int, dict[str, deque[Request]]] = defaultdict(lambda: defaultdict(deque))
    for r in requests:
        steps[r.step][r.task].append(r)
    now = 0.0
    done: list[Served] = []
    for step in sorted(steps):
        tasks = steps[step]
        # the graph's threads logged the step's requests in any order: start its tasks in the order of its Sends
        first = sorted((chain[0].send, chain[0].character, chain[0].text, task) for task, chain in tasks.items())
        waiting: deque[Request] = deque(tasks[task].popleft() for *_, task in first)
        active: dict[int, tuple[Served, float]] = {}
        while waiting or active:
            for request in list(waiting):
                if server.free_slot(request) is not None:
                    waiting.remove(request)
                    served = server.launch(request, now)
                    active[served.slot] = (served, work(served))
            slot, (served, left) = min(active.items(), key=lambda kv: kv[1][1])
            elapsed = left * len(active)
            now += elapsed
            active = {k: (s, w - left) for k, (s, w) in active.items() if k != slot}
            served.end = now
            server.finish(served, now)
            done.append(served)
            chain = tasks[served.request.task]
            if chain:
                waiting.append(chain.popleft())
    return done


def ceiling(requests: Sequence[Request]) -> tuple[int, int]:
    """(prompt, cached) characters if every earlier request and reply stayed cached and any one could serve:
    what the prompts' layout allows, before the server's slots and cache rules take their share."""
    done: list[str] = []
    cached = 0
    for r in sorted(requests, key=lambda r: (r.step, r.send, r.index)):
        cached += max((lcp(text, r.text) for text in done), default=0)
        done.append(r.text + r.reply)
    return sum(len(r.text) for r in requests), cached


def work(served: Served) -> float:
    """CPU seconds the request needs: its uncached prompt and its reply."""
    return served.uncached / CHARS_PER_TOKEN / PROMPT_TOK_S + len(served.request.reply) / CHARS_PER_TOKEN / GEN_TOK_S


def tokens(chars: float) -> float:
    return chars / CHARS_PER_TOKEN


def report(done: Sequence[Served], model: ServerModel) -> None:
    total = sum(len(s.request.text) for s in done)
    cached = sum(s.cached for s in done)
    uncached = total - cached
    wall = max(s.end for s in done)
    print(f"\n{model.label()}")
    print(
        f"  {len(done)} requests, {total:,} prompt characters (~{tokens(total):,.0f} tokens); "
        f"cached {cached / total:.1%}; uncached ~{tokens(uncached):,.0f} tokens "
        f"(~{tokens(uncached) / PROMPT_TOK_S:,.0f} s of prompt processing at {PROMPT_TOK_S:.0f} tok/s); "
        f"simulated wall ~{wall:,.0f} s"
    )
    by_action: dict[str, list[Served]] = defaultdict(list)
    for s in done:
        by_action[s.request.action].append(s)
    columns = ("calls", 6), ("prompt tok", 11), ("tok/call", 9), ("cached", 7), ("uncached tok", 13), ("share", 6)
    print(f"  {'action':<10} " + " ".join(f"{name:>{width}}" for name, width in columns))
    rows = sorted(by_action.items(), key=lambda kv: -sum(s.uncached for s in kv[1]))
    for action, items in rows:
        p = sum(len(s.request.text) for s in items)
        u = sum(s.uncached for s in items)
        print(
            f"  {action:<10} {len(items):>6} {tokens(p):>11,.0f} {tokens(p) / len(items):>9,.0f} "
            f"{1 - u / p:>7.1%} {tokens(u):>13,.0f} {u / uncached:>6.1%}"
        )


def show(done: Sequence[Served], count: int) -> None:
    """The requests with the most uncached text, and where their cached prefix ended."""
    for s in sorted(done, key=lambda s: -s.uncached)[:count]:
        r = s.request
        where = r.text[: s.cached].rsplit("<|im_start|>", 1)[-1].split("\n", 1)[0] or "(nothing cached)"
        after = r.text[s.cached : s.cached + 100].replace("\n", "\\n")
        print(
            f"  #{r.index} {r.character} {r.action} step {r.step}: {tokens(s.uncached):,.0f} of "
            f"{tokens(len(r.text)):,.0f} tokens uncached; cached prefix ends in the {where} message before: {after!r}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="philosophers")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slots", type=int, default=None, help="Default: the server's configured parallel slots.")
    parser.add_argument("--show", type=int, default=0, help="List the N requests with the most uncached text.")
    args = parser.parse_args()
    if args.slots is None:
        from sopgraph.tools.local_model.server import server_settings

        args.slots = server_settings()["parallel"]
    requests = capture(args.scenario, args.rounds)
    characters = load_scenario(args.scenario).ids
    print(
        f"scenario {args.scenario}, {args.rounds} rounds: {len(requests)} model requests (scripted, replies at their "
        f"longest); tokens ~ characters / {CHARS_PER_TOKEN}"
    )
    total, cached = ceiling(requests)
    print(
        f"layout's ceiling (any earlier prompt cached, no slot or cache limits): cached {cached / total:.1%}, "
        f"uncached ~{tokens(total - cached):,.0f} tokens"
    )
    configured = ServerModel(slots=args.slots)
    variants = [
        configured,
        dataclasses.replace(configured, idle_clear=False),
        dataclasses.replace(configured, ram_cache=False),
        dataclasses.replace(configured, cache_reuse=0),
        dataclasses.replace(configured, pin=True),
        dataclasses.replace(configured, pin=True, idle_clear=False),
    ]
    for i, model in enumerate(variants):
        done = simulate(requests, model, characters)
        report(done, model)
        if i == 0 and args.show:
            show(done, args.show)


if __name__ == "__main__":
    main()
