"""Giving up on blocked model requests: Ctrl-C stops a run at once instead of waiting for every reply.

A model request may run for minutes. Requests sent through `run_all` run on daemon threads (nothing joins
them at exit, unlike a ThreadPoolExecutor's) and the caller waits for them interruptibly; when the wait is
interrupted (KeyboardInterrupt in the waiting thread) or the context's `Cancel` fires (`cancel_on_interrupt`
fires it from the SIGINT handler, so work on other threads stops too), every request still running is
abandoned: its HTTP connections are shut down, and the caller gets `Abandoned` (or the KeyboardInterrupt).

Connections are known to a request through `track_http_request`, an httpx request hook that the gateway's
HTTP clients carry (nodes/llm.py): it tags the request with httpcore's `trace` extension, which hands back
the socket of each new connection. llama.cpp's server polls a non-streaming request's connection about once a
second and cancels the slot's task when the client has gone (`server_response_reader::wait_for_all`), so
the slot stops generating; that poll is delayed for as long as another slot *streams* tokens to its client
(each token wakes the wait and restarts its one-second timeout; llama.cpp's server-queue.cpp, unfixed as
of this writing), so then the abandoned slot runs on until that stream ends or its own reply is complete.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "Abandoned",
    "Cancel",
    "cancel_on_interrupt",
    "current",
    "run_all",
    "run_one",
    "track_http_request",
]

T = TypeVar("T")


class Abandoned(BaseException):
    """Work given up on (Ctrl-C, or the caller cancelled it): nothing of it is kept. A BaseException, like
    KeyboardInterrupt, so handlers that record failures (`except Exception`) do not record it as one."""


class Cancel:
    """A one-way switch: `cancel()` runs every registered callback once (a late `on_cancel` runs at once)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cancelled = False
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001, S110 - one failing callback must not keep the others from running
                pass

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` on cancel; returns a function that unregisters it."""
        with self._lock:
            if not self._cancelled:
                key = self._next
                self._next += 1
                self._callbacks[key] = callback

                def unregister() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)

                return unregister
        callback()
        return lambda: None

    def check(self) -> None:
        if self._cancelled:
            raise Abandoned("cancelled before it started")


_current: contextvars.ContextVar[Cancel | None] = contextvars.ContextVar("sopgraph_cancel", default=None)


def current() -> Cancel | None:
    """The Cancel of the work this thread does (threads started with a copy of the context share it)."""
    return _current.get()


@contextmanager
def cancel_on_interrupt() -> Iterator[Cancel]:
    """A Cancel for the work started inside (every thread that copies the context sees it), fired by Ctrl-C.

    On the main thread, while Python's own SIGINT handler is in place, SIGINT fires it and then raises
    KeyboardInterrupt as usual: a request waited on by a worker thread (a LangGraph node, an eval item) is
    abandoned even while the main thread waits for that worker. Anywhere, a KeyboardInterrupt leaving the
    block fires it. An enclosing Cancel firing fires this one too. Once it fired, the executor's complaint
    about work submitted after its shutdown is not printed (`_QuietAfterShutdown`).
    """
    token = Cancel()
    parent = current()
    unlink = parent.on_cancel(token.cancel) if parent is not None else (lambda: None)
    reset = _current.set(token)
    quiet = _QuietAfterShutdown(token)
    _futures_log.addFilter(quiet)
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:

            def on_sigint(signum: int, frame: Any) -> None:
                # The handler runs on the main thread between bytecodes, maybe while that thread holds one of
                # the locks cancelling takes: a thread of its own does the cancelling.
                threading.Thread(target=token.cancel, name="sopgraph-cancel", daemon=True).start()
                raise KeyboardInterrupt

            signal.signal(signal.SIGINT, on_sigint)
        else:
            previous = None
    try:
        yield token
    except KeyboardInterrupt:
        token.cancel()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        _futures_log.removeFilter(quiet)
        _current.reset(reset)
        unlink()


_futures_log = logging.getLogger("concurrent.futures")


class _QuietAfterShutdown(logging.Filter):
    """Drops concurrent.futures' "exception calling callback" traceback for a RuntimeError of submitting to a
    shut-down executor, once `token` fired. On Ctrl-C LangGraph's executor (pregel/_executor.py) waits for
    the tasks still running and then shuts down; a task's done callback, which saves the task's writes by
    submitting them to that executor, runs just after the wait saw the task done and may come after the
    shutdown. The writes are lost as every write of an interrupted step is (resume runs the step again);
    the traceback is only noise under the one line that names the resume command."""

    def __init__(self, token: Cancel) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        late = isinstance(exc, RuntimeError) and "cannot schedule new futures after" in str(exc)
        return not (late and self.token.cancelled)


class _Request:
    """One request run by `run_all`: the sockets its HTTP client connected, shut down when it is abandoned."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.abandoned = False
        self._sockets: list[socket.socket] = []

    def adopt(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.abandoned:
                self._sockets.append(sock)
                return
        _shut(sock)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: it sends the FIN and wakes the thread blocked reading the reply, where a close
    # from another thread would do neither while that read holds the file open.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("sopgraph_request", default=None)


def track_http_request(request: Any) -> None:
    """An httpx `request` event hook: inside `run_all`, the connection the request opens belongs to the
    request (and is shut down when it is abandoned); an abandoned request's retries are refused. Clients
    that carry it must not keep connections alive, so that every request connects (and is traced)."""
    handle = _request.get()
    if handle is None:
        return
    if handle.abandoned:
        raise Abandoned("the request was abandoned")
    chained = request.extensions.get("trace")

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                handle.adopt(sock)
        if chained is not None:
            chained(event, info)

    request.extensions["trace"] = trace


def run_all(calls: Sequence[Callable[[], T]], name: str = "request") -> list[T | Exception]:
    """Every call at once, each on a daemon thread with a copy of the caller's context; results in order,
    failures (Exceptions) as values. A KeyboardInterrupt or Abandoned (or other BaseException) raised by a
    call, in the wait, or by the context's Cancel firing, abandons the calls still running and is raised."""
    if not calls:
        return []
    token = current()
    if token is not None:
        token.check()
    handles = [_Request() for _ in calls]
    futures: list[Future[T]] = [Future() for _ in calls]
    woken: Future[None] = Future()

    def abandon_all() -> None:
        for handle in handles:
            handle.abandon()
        if not woken.done():
            try:
                woken.set_result(None)
            except Exception:  # noqa: BLE001, S110 - set by a racing caller
                pass

    def worker(call: Callable[[], T], handle: _Request, future: Future[T]) -> None:
        _request.set(handle)
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(exc)
        else:
            future.set_result(result)

    for index, (call, handle, future) in enumerate(zip(calls, handles, futures, strict=True)):
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(worker, call, handle, future), name=f"{name}-{index}", daemon=True
        )
        thread.start()
    unregister = token.on_cancel(abandon_all) if token is not None else (lambda: None)
    try:
        while True:
            pending = {f for f in futures if not f.done()}
            fatal = next((f for f in futures if f.done() and not isinstance(f.exception(), Exception | None)), None)
            if fatal is not None:
                raise fatal.exception()  # type: ignore[misc]
            if not pending:
                break
            if woken.done():
                raise Abandoned("cancelled while waiting for the reply")
            watched: set[Future[Any]] = {*pending, woken}
            wait(watched, return_when=FIRST_COMPLETED)
    except BaseException:
        abandon_all()
        raise
    finally:
        unregister()
    results: list[T | Exception] = []
    for future in futures:
        exc = future.exception()
        results.append(exc if isinstance(exc, Exception) else future.result())
    return results


def run_one(call: Callable[[], T], name: str = "request") -> T:
    """One call as `run_all` makes it (abandoned on Ctrl-C); its failure is raised."""
    (result,) = run_all([call], name)
    if isinstance(result, Exception):
        raise result
    return result
