"""Running probe checks: a command, an HTTP request, a TCP connect, off the loop's critical path.

The watchdog decides when a probe runs (``RunProbe``) and what its results mean
(``core/probes.py``); this driver only runs one check and reports ``(passed, result)``.

- ``exec``: the command runs without a shell in its own session and process group, with the
  service's environment and folder; exit 0 passes. It is watched from the loop as the
  services are (``processes.py``): its exit through a pidfd, its output (stdout and stderr
  together) through the pipe's reader, without a thread (asyncio's own subprocesses start
  a waiting thread for each on this Python, which cost 3.7 wake-ups of the loop per check
  in ``bench/probes.py``; this costs one). The first 4 KiB of output are kept as the
  result's words; then the pipe is closed, not drained: a check flooding its output
  (``yes``) would keep the loop busy for its whole timeout, and instead its next write gets
  EPIPE (SIGPIPE), its result saying it wrote over 4 KiB. At its timeout the whole group
  is killed (``frida-ps`` is known to hang at 100 % CPU, and a hung ``adb`` may have
  children), and so is every process carrying the check's own ``HEARTWATCH_CHECK_ID``
  (what left the group, ``setsid``): nothing of it is left behind, however often it times
  out. A normal exit kills nothing, so a process a check started on purpose (``adb``'s
  server daemon, started by the first ``adb`` command) lives on.
- ``http``: a GET on the loop (asyncio streams, ``h11`` for the protocol; no proxy: probes
  check this machine's services), its ``timeout`` the deadline of the whole request
  (connect, answer, body), so a server that drips its answer fails at the timeout and holds
  nothing of anyone else's checks, and at the daemon's exit the connection is just closed
  (a host name is looked up in a daemon thread, which the exit does not wait for).
  Redirects are followed (at most ``MAX_REDIRECTS``, within the same deadline; a loop
  fails), credentials in the URL are sent as basic auth. A 2xx or 3xx answer passes, or
  exactly ``status``; only the first 4 KiB of the body are read.
- ``tcp``: an asyncio connection, closed at once.
- ``expect``: a regular expression the output (exec, multi-line: ``^``/``$`` match at each
  line) or the body (http) must contain. It is matched on the loop, so with a time limit
  (``MATCH_TIMEOUT``, the ``regex`` module's, as the log viewer's grep): a pattern that
  backtracks for ever (``^(a|aa)+$`` against ``aaaa…!``) fails the check saying so, instead of
  freezing the daemon for seconds.

At most one check per probe runs at a time (the watchdog asks for the next only after the
result); ``cancel_unless`` ends the checks of runs that are over (the group killed), so a
probe never outlives its service's run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import h11
import psutil
from loguru import logger

from heartwatch.core.outputlines import without_controls
from heartwatch.core.probes import (
    OUTPUT_LIMIT,
    ExecCheck,
    HttpCheck,
    ProbeRole,
    ProbeSpec,
    RunProbe,
    TcpCheck,
)
from heartwatch.core.redact import redact
from heartwatch.daemon.identity import RunAs
from heartwatch.daemon.oserrors import describe_os_error
from heartwatch.daemon.processes import find_processes_with_env
from heartwatch.daemon.tasks import TaskSet

ResultSink = Callable[[RunProbe, bool, str], None]
# Who an exec check runs as, as its service does (``user``, ``group``) and with its
# ``umask``; None: as the daemon.
Identity = tuple[RunAs | None, int | None] | None
# After an exec check exits, how long its last output may take to arrive (its pipe may be
# held by a process it left behind, which must not hold up the result).
OUTPUT_GRACE = 0.2
# How long matching ``expect`` against at most 4 KiB may take on the loop; a sane pattern
# takes microseconds.
MATCH_TIMEOUT = 0.05
# In each exec check's environment, unique to the check, inherited by all it starts: what
# finds its processes that left its group when it is killed.
CHECK_ID_VARIABLE = "HEARTWATCH_CHECK_ID"


class ProbeRunner:
    """Runs the checks the watchdog asks for and hands each result to ``on_result``."""

    def __init__(self, on_result: ResultSink) -> None:
        self._on_result = on_result
        self._running: dict[tuple[str, ProbeRole], tuple[int, asyncio.Task[None]]] = {}
        self._tasks = TaskSet("probes")
        self._patterns: dict[str, Expect] = {}

    def __len__(self) -> int:
        """Checks under way."""
        return len(self._running)

    def start(
        self,
        action: RunProbe,
        spec: ProbeSpec,
        cwd: Path,
        env: Mapping[str, str],
        as_service: Identity = None,
    ) -> None:
        """Run one check of ``spec`` for ``action`` (an exec check as the service's user and
        umask, ``as_service``); its result goes to ``on_result``."""
        key = (action.service, action.role)
        previous = self._running.pop(key, None)
        if previous is not None:  # an older run's check, still ending: it is of no use
            previous[1].cancel()
        task = self._tasks.start(
            self._run(action, spec, cwd, env, as_service),
            name=f"probe {action.service} {action.role}",
        )
        self._running[key] = (action.run, task)

    def cancel_unless(self, wanted: Callable[[str, int], bool]) -> None:
        """End every check whose service run is over (``wanted(service, run)`` is false)."""
        for key, (run, task) in list(self._running.items()):
            if not wanted(key[0], run):
                del self._running[key]
                task.cancel()

    async def close(self) -> None:
        """End every check (exec: their groups killed; http, tcp: their connections closed)."""
        self._running.clear()
        await self._tasks.close()

    async def _run(
        self,
        action: RunProbe,
        spec: ProbeSpec,
        cwd: Path,
        env: Mapping[str, str],
        as_service: Identity,
    ) -> None:
        task = asyncio.current_task()
        try:
            passed, result = await self._check(spec, cwd, env, as_service)
        except Exception as error:  # a bug must not leave the probe waiting for ever
            logger.opt(exception=error).error(
                "{}: {} probe: cannot run", action.service, action.role
            )
            passed, result = False, f"cannot be run ({type(error).__name__})"
        finally:
            key = (action.service, action.role)
            current = self._running.get(key)
            if current is not None and current[1] is task:
                del self._running[key]
        self._on_result(action, passed, result)

    async def _check(
        self, spec: ProbeSpec, cwd: Path, env: Mapping[str, str], as_service: Identity
    ) -> tuple[bool, str]:
        check = spec.check
        pattern = None if spec.expect is None else self._pattern(spec.expect)
        if isinstance(check, ExecCheck):
            return await run_exec(check.argv, spec.timeout, cwd, env, pattern, as_service)
        if isinstance(check, HttpCheck):
            return await run_http(check, spec.timeout, pattern)
        return await run_tcp(check, spec.timeout)

    def _pattern(self, expect: str) -> Expect:
        pattern = self._patterns.get(expect)
        if pattern is None:
            pattern = self._patterns[expect] = Expect(expect)
        return pattern


class Expect:
    """``expect``: a regular expression searched for in a check's output or body, ``^`` and
    ``$`` at each line, within ``timeout`` seconds."""

    def __init__(self, pattern: str, timeout: float = MATCH_TIMEOUT) -> None:
        """Raise ``ValueError`` if ``pattern`` is not a regular expression (the configuration
        refuses those already)."""
        import regex  # on first use: a daemon with no ``expect`` does not carry it (3 MB)

        try:
            self._compiled = regex.compile(pattern, regex.MULTILINE | regex.VERSION0)
        except regex.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        self.pattern = pattern
        self.timeout = timeout

    def missing_from(self, text: str, what: str) -> str | None:
        """``None`` if the pattern is found in ``text``, else why not, about ``what`` ("its
        output"): not found, or not found in time."""
        try:
            if self._compiled.search(text, timeout=self.timeout) is not None:
                return None
        except TimeoutError:
            return (
                f"but matching {what} against `{self.pattern}` took over {self.timeout * 1000:g} ms"
            )
        return f"{what} not matching `{self.pattern}`"


# -- exec ------------------------------------------------------------------------------------


class _RunningCheck:
    """One exec check's process, watched from the loop without a thread: its exit through a
    pidfd, its output through the pipe's reader (the first ``OUTPUT_LIMIT`` bytes kept, then
    the pipe closed: ``cut_off``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        self._loop = loop
        self.popen = popen
        self.output = bytearray()
        self.cut_off = False  # the pipe closed at OUTPUT_LIMIT: the check's writes fail since
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self._pipe = popen.stdout.fileno()
        os.set_blocking(self._pipe, False)
        loop.add_reader(self._pipe, self._read)
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # no pidfd: a thread waits instead
            waiting = loop.run_in_executor(None, popen.wait)
            waiting.add_done_callback(lambda _: self._set(self.exited))
        else:
            loop.add_reader(self._pidfd, self._reap)

    def _read(self) -> None:
        try:
            data = os.read(self._pipe, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # everyone holding the pipe is gone
            self._close_pipe()
            return
        self.output += data[: OUTPUT_LIMIT - len(self.output)]
        if len(self.output) >= OUTPUT_LIMIT:  # enough: the rest is not read (nor waited for)
            self.cut_off = True
            self._close_pipe()

    def _reap(self) -> None:
        if self.popen.poll() is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._set(self.exited)

    def _close_pipe(self) -> None:
        if self._pipe >= 0:
            self._loop.remove_reader(self._pipe)
            assert self.popen.stdout is not None
            self.popen.stdout.close()
            self._pipe = -1
        self._set(self.drained)

    @staticmethod
    def _set(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    def close(self) -> None:
        """Stop watching (its output may still be held by something it left behind)."""
        self._close_pipe()
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


def _spawn(
    argv: tuple[str, ...], cwd: Path, env: Mapping[str, str], as_service: Identity
) -> subprocess.Popen[bytes]:
    """Start a check in its own session. In the loop's thread, as asyncio's own subprocesses
    are started: a fork and exec take well under a millisecond, less than a thread hand-off."""
    run_as, umask = as_service if as_service is not None else (None, None)
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        umask=-1 if umask is None else umask,
        user=None if run_as is None else run_as.uid,
        group=None if run_as is None else run_as.gid,
        extra_groups=None if run_as is None else list(run_as.groups),
    )


async def run_exec(
    argv: tuple[str, ...],
    timeout: float,
    cwd: Path,
    env: Mapping[str, str],
    expect: Expect | None = None,
    as_service: Identity = None,
) -> tuple[bool, str]:
    """Run ``argv`` once; ``(passed, result)``, the result in people's words."""
    check_id = uuid.uuid4().hex
    try:
        popen = _spawn(argv, cwd, {**env, CHECK_ID_VARIABLE: check_id}, as_service)
    except OSError as error:
        return False, f"cannot run {argv[0]}: {describe_os_error(error)}"
    except subprocess.SubprocessError as error:
        return False, f"cannot run {argv[0]}: {error}"
    check = _RunningCheck(asyncio.get_running_loop(), popen)
    try:
        try:
            await asyncio.wait_for(asyncio.shield(check.exited), timeout)
        except TimeoutError:
            _kill_group(popen.pid)
            await asyncio.get_running_loop().run_in_executor(None, _kill_escaped, check_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(check.exited), 5.0)
            words = _words(check.output)
            return False, f"timed out after {timeout:g} s" + (f": {words}" if words else "")
        if not check.drained.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(check.drained), OUTPUT_GRACE)
    except asyncio.CancelledError:
        _kill_group(popen.pid)  # its service's run is over, or the daemon stops
        _kill_escaped(check_id)  # here and now: this task may not get to wait again
        with contextlib.suppress(TimeoutError):  # reaped before it is forgotten
            await asyncio.wait_for(asyncio.shield(check.exited), 5.0)
        raise
    finally:
        check.close()
    text = _text(check.output)
    said = _said(check.output)
    if popen.returncode != 0:
        cut_off = f" after {OUTPUT_LIMIT // 1024} KiB of output (the rest is not read)"
        return False, f"{_describe_end(popen.returncode)}{cut_off if check.cut_off else ''}{said}"
    missing = None if expect is None else expect.missing_from(text, "its output")
    if missing is not None:
        return False, f"exited 0, {missing}{said}"
    return True, f"exited 0{said}"


def _kill_group(pid: int) -> None:
    """SIGKILL the check's whole process group (it leads one: ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_escaped(check_id: str) -> None:
    """SIGKILL every process of the check that left its group (``setsid``)."""
    for process in find_processes_with_env(CHECK_ID_VARIABLE, check_id):
        with contextlib.suppress(psutil.Error):
            process.kill()  # psutil checks it is still the same process


def _describe_end(returncode: int | None) -> str:
    if returncode is None:
        return "ended"
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _text(output: bytes | bytearray) -> str:
    return bytes(output).decode("utf-8", "replace").replace("\r\n", "\n")


def _said(output: bytes | bytearray) -> str:
    """What a result quotes of the output (": error: device offline"), or "" if nothing."""
    words = _words(output)
    return f": {words}" if words else ""


def _words(output: bytes | bytearray) -> str:
    """Output as one line (reasons are one line in logs and the journal), without escape
    sequences or control characters (a check's output reaches the journal, alerts and the
    CSV export)."""
    return " ".join(without_controls(_text(output)).split())


# -- http and tcp ----------------------------------------------------------------------------

# Read at most this much at a time; an answer's head must fit h11's own limit (16 KiB).
_READ_SIZE = 65536
MAX_REDIRECTS = 10  # urllib's and Kubernetes' limit
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _HttpFailure(Exception):
    """An HTTP check failed for a reason its message says in people's words."""


async def _http_get(url: str) -> tuple[int, bytes]:
    """GET ``url``, following up to ``MAX_REDIRECTS`` redirects: the last answer's status and
    the first ``OUTPUT_LIMIT`` bytes of its body. A redirect back to a URL already asked for
    is a failure (a loop never ends), as is one to something not http(s)."""
    asked = [url]
    while True:
        status, location, body = await _http_get_once(url)
        if status not in _REDIRECTS or location is None:
            return status, body
        target = urljoin(url, location)
        if urlsplit(target).scheme not in ("http", "https"):
            raise _HttpFailure(f"HTTP {status}: redirected to {redact(target)}, not http(s)")
        if target in asked:
            loop = " -> ".join(redact(u) for u in [*asked[asked.index(target) :], target])
            raise _HttpFailure(f"HTTP {status}: a redirect loop: {loop}")
        if len(asked) > MAX_REDIRECTS:
            raise _HttpFailure(f"HTTP {status}: more than {MAX_REDIRECTS} redirects")
        asked.append(target)
        url = target


async def _connect(
    host: str, port: int, context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host``'s addresses in turn (TLS with ``context``). A name is looked up in
    a daemon thread of its own, not asyncio's executor: a lookup cannot be interrupted, and
    asyncio's executor threads are joined when the loop ends, so a resolver that does not
    answer would hold the daemon's exit."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        addresses = await _look_up(host, port)
    else:
        addresses = [host]
    error: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host if context else None
            )
        except ssl.SSLError:
            raise  # the server answered: another address would not say better
        except OSError as failure:
            error = failure
    assert error is not None  # getaddrinfo answers with an address or raises
    raise error


async def _look_up(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[str]] = loop.create_future()

    def settle(addresses: list[str] | None, error: OSError | None) -> None:
        if answer.done():
            return  # given up on: timed out, or the daemon stops
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(addresses or [])

    def look_up() -> None:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            outcome: tuple[list[str] | None, OSError | None] = (None, error)
        else:
            addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
            outcome = (addresses, None)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=look_up, name=f"probe lookup {host}", daemon=True).start()
    return await answer


async def _http_get_once(url: str) -> tuple[int, str | None, bytes]:
    """GET ``url`` once over a connection of its own: the status, the redirect's
    ``Location`` if any, the first ``OUTPUT_LIMIT`` bytes of the body (the rest is not read).
    Credentials in the URL (``http://user:password@host/``) are sent as basic auth. No proxy,
    whatever the daemon's environment says: probes check this machine's services."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname
    if host is None:
        raise _HttpFailure(f"no host in {redact(url)}")
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        ("Host", parts.netloc.rpartition("@")[2]),
        ("User-Agent", "heartwatch-probe"),
        ("Accept", "*/*"),
        ("Connection", "close"),
    ]
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append(("Authorization", f"Basic {base64.b64encode(secret.encode()).decode()}"))
    context = ssl.create_default_context() if https else None
    reader, writer = await _connect(host, port, context)
    try:
        connection = h11.Connection(h11.CLIENT)
        writer.write(connection.send(h11.Request(method="GET", target=target, headers=headers)))
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()
        status: int | None = None
        location: str | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(_READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"location":
                        location = value.decode("latin-1")
            elif isinstance(event, h11.Data):
                body += event.data[: OUTPUT_LIMIT - len(body)]
                if len(body) >= OUTPUT_LIMIT:
                    break  # the rest is not read
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as error:
        # h11's words, without the bytes it quotes as a Python repr
        raise _HttpFailure(f"not an HTTP answer: {str(error).partition(':')[0]}") from None
    except h11.LocalProtocolError as error:  # a space in the URL (or a redirect's), ...
        said = str(error).partition(":")[0]
        raise _HttpFailure(f"cannot ask for {redact(url)}: {said}") from None
    finally:
        writer.transport.abort()  # at once: nothing more is read or waited for
    if status is None:
        raise _HttpFailure("the connection closed before an answer")
    return status, location, bytes(body)


async def run_http(
    check: HttpCheck, timeout: float, expect: Expect | None = None
) -> tuple[bool, str]:
    """GET ``check.url`` within ``timeout`` in all (connect, answer and body); ``(passed,
    result)``."""
    try:
        async with asyncio.timeout(timeout):
            status, body = await _http_get(check.url)
    except TimeoutError:
        return False, f"timed out after {timeout:g} s"
    except _HttpFailure as failure:
        return False, str(failure)
    except ssl.SSLCertVerificationError as error:
        return False, f"cannot connect: TLS: {error.verify_message or error.reason}"
    except ssl.SSLError as error:  # "WRONG_VERSION_NUMBER": not TLS on that port, ...
        said = (error.reason or type(error).__name__).replace("_", " ").lower()
        return False, f"cannot connect: TLS: {said}"
    except OSError as error:
        return False, f"cannot connect: {_connect_error(error)}"
    text = _text(body)
    said = _said(body)
    good = status == check.status if check.status is not None else 200 <= status < 400
    if not good:
        wanted = check.status if check.status is not None else "2xx or 3xx"
        return False, f"HTTP {status}, not {wanted}{said}"
    missing = None if expect is None else expect.missing_from(text, "its body")
    if missing is not None:
        return False, f"HTTP {status}, {missing}{said}"
    return True, f"HTTP {status}"


def _connect_error(error: OSError) -> str:
    """Why a connection failed, in the system's words ("Connection refused", "Name or
    service not known"): asyncio's own name the address again ("Connect call failed ...")."""
    if isinstance(error, socket.gaierror):
        return error.strerror or str(error)
    return os.strerror(error.errno) if error.errno else describe_os_error(error)


async def run_tcp(check: TcpCheck, timeout: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(_connect(check.host, check.port, None), timeout)
    except TimeoutError:
        return False, f"timed out after {timeout:g} s"
    except OSError as error:
        return False, f"cannot connect: {_connect_error(error)}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "connected"
