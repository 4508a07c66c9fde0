"""Test doubles for faults: a checkpointer that "dies" at a chosen point of a run.

A process killed with SIGKILL keeps exactly what its checkpointer had stored when it died. `DyingSaver`
wraps a real saver and, once its trigger fires, refuses every later write (raising `Killed`, which no node
catches), so the stored run is what a kill at that point leaves behind; a fresh graph on the real saver
then plays the part of `sopgraph resume` in a new process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, ChannelVersions, Checkpoint, CheckpointMetadata


class Killed(BaseException):
    """The process is gone: nothing after this point was stored."""


Writes = Sequence[tuple[str, Any]]


def branch_writes(node_after: str) -> Callable[[Writes], bool]:
    """A trigger counting the saved writes of tasks that continue to `node_after` (one per finished task of
    a fan-out whose workers all join there)."""
    return lambda writes: any(channel == f"branch:to:{node_after}" for channel, _ in writes)


class DyingSaver(BaseCheckpointSaver):
    """Delegates to `inner` until `after` tasks' writes matching `matches` are stored (or `after_puts`
    checkpoints), then refuses every write."""

    def __init__(
        self,
        inner: BaseCheckpointSaver,
        *,
        matches: Callable[[Writes], bool] | None = None,
        after: int = 1,
        after_puts: int | None = None,
    ) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.matches = matches
        self.after = after
        self.after_puts = after_puts
        self.seen = 0
        self.puts = 0
        self.dead = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.dead:
            raise Killed("the process was killed")

    def get_tuple(self, config: Any) -> Any:
        return self.inner.get_tuple(config)

    def list(self, config: Any, **kwargs: Any) -> Iterator[Any]:
        return self.inner.list(config, **kwargs)

    def get_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get_delta_channel_history(*args, **kwargs)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        return self.inner.get_next_version(current, channel)

    def put(
        self, config: Any, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> Any:
        with self._lock:
            self._check()
            saved = self.inner.put(config, checkpoint, metadata, new_versions)
            self.puts += 1
            if self.after_puts is not None and self.puts >= self.after_puts:
                self.dead = True
            return saved

    def put_writes(self, config: Any, writes: Writes, task_id: str, task_path: str = "") -> None:
        with self._lock:
            self._check()
            self.inner.put_writes(config, writes, task_id, task_path)
            if self.matches is not None and self.matches(writes):
                self.seen += 1
                if self.seen >= self.after:
                    self.dead = True

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)
