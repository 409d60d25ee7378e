"""Every OS effect on service processes goes through ``ProcessRunner``: spawn, reap, stop, kill.

Each service runs in its own session (so its own process group). Its exit is noticed through a
pidfd registered with the event loop, so there is no thread and no polling, and a crash is seen
within a millisecond. Its stdout and stderr go through two pipes into one ``RotatingOutput``;
the last line it wrote on stderr (``core/outputlines.LastLine``) is handed over with an exit
that was not asked for, as the reason a person needs ("exit code 1: ModuleNotFoundError: ...").
It runs as the daemon's user, or as ``user``/``group`` when the daemon is root (``RunAs``).

Stopping follows systemd's order: the stop signal to the whole group at once, then SIGCONT (a
stopped, hung process cannot act on SIGTERM otherwise); the same to the run's processes that
left the group; then after ``stop_timeout`` SIGKILL to all of them.

Each run carries a unique ``HEARTWATCH_RUN_ID`` in its environment, inherited by everything it
starts. When a run crashes, its descendants are already orphaned (a ``setsid`` child is no longer
in the group, nor below any process we know); the run id finds them, and they are killed before
the exit is reported. Likewise a stopped run is reported down only once its whole group and its
escaped processes are gone. So a restart never runs next to a leftover of the old run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from loguru import logger

from heartwatch.config import command_argv
from heartwatch.core.events import describe_exit
from heartwatch.core.outputlines import LastLine
from heartwatch.daemon.identity import RunAs
from heartwatch.daemon.output import RotatingOutput
from heartwatch.daemon.tasks import TaskSet

# (service, returncode, the last line it wrote on stderr if it ended on its own and not with 0)
ExitCallback = Callable[[str, int, str | None], None]
RUN_ID_VARIABLE = "HEARTWATCH_RUN_ID"


class SpawnError(Exception):
    """A command could not be started; the message says why, plainly (no Python reprs)."""


def cannot_start_line(message: str) -> bytes:
    """What a service's output file says of a start that failed."""
    return f"[heartwatch] cannot start: {message}\n".encode()


@dataclass
class Child:
    """A running service process."""

    service: str
    popen: subprocess.Popen[bytes]
    create_time: float
    output: RotatingOutput
    run_id: str
    returncode: int | None = None
    stopping: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    stderr_tail: LastLine = field(default_factory=LastLine)  # its last words on stderr
    _pidfd: int = -1
    _pipes: dict[int, str] = field(default_factory=dict)  # open output pipes: fd -> stream

    @property
    def pid(self) -> int:
        return self.popen.pid


class ProcessRunner:
    def __init__(self, on_exit: ExitCallback) -> None:
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self.children: dict[str, Child] = {}
        self._sweeps = TaskSet("process sweeps")  # a crashed run's leftovers, being ended

    def spawn(
        self,
        service: str,
        command: str | list[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output: RotatingOutput,
        run_as: RunAs | None = None,
        umask: int | None = None,
    ) -> Child:
        """Start ``command`` in a new session (as ``run_as``, with ``umask`` if given); raise
        ``SpawnError`` if it cannot start."""
        argv = command_argv(command)
        output.write(f"[heartwatch] starting {shlex.join(argv)}\n".encode())
        run_id = uuid.uuid4().hex
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**env, RUN_ID_VARIABLE: run_id},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,  # apart from stdout, to know its last words
                start_new_session=True,
                close_fds=True,
                umask=-1 if umask is None else umask,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else list(run_as.groups),
            )
        except OSError as error:
            message = describe_spawn_error(error, argv, cwd, env.get("PATH"))
            output.write(cannot_start_line(message))
            raise SpawnError(message) from None
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        child = Child(service, popen, create_time, output, run_id)
        self.children[service] = child
        assert popen.stdout is not None
        assert popen.stderr is not None
        for stream, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            child._pipes[fd] = stream
            self._loop.add_reader(fd, self._read_output, child, fd)
        try:
            child._pidfd = os.pidfd_open(popen.pid)
            self._loop.add_reader(child._pidfd, self._reap, child)
        except (AttributeError, OSError):  # no pidfd: a thread waits instead
            self._loop.run_in_executor(None, self._wait_in_thread, child)
        return child

    def begin_stop(self, child: Child, stop_signal: int) -> None:
        """Send the stop signal (then SIGCONT) to the child's group, now, in this loop turn."""
        child.stopping = True
        for sig in (stop_signal, signal.SIGCONT):
            _signal_group(child.pid, sig)

    async def finish_stop(self, child: Child, stop_signal: int, timeout: float) -> None:
        """After ``begin_stop``: signal descendants that left the group, wait, then SIGKILL.

        Escaped descendants are found by the run id in their environment, in a worker thread
        (reading every process's environment takes milliseconds on a busy host).
        """
        escaped = await self._escaped(child)
        for sig in (stop_signal, signal.SIGCONT):
            _signal_each(escaped, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone(child, escaped), timeout)
        survivors = [p for p in escaped if _alive(p)]
        if not child.exited.is_set() or survivors:
            logger.warning(
                "{}: still running {:g} s after {}; killing pid {} group and {} escaped",
                child.service,
                timeout,
                signal.Signals(stop_signal).name,
                child.pid,
                len(survivors),
            )
            _kill_all(child.pid, survivors)
        await child.exited.wait()
        _signal_group(child.pid, signal.SIGKILL)  # whatever is still in the group
        _signal_each(await self._escaped(child), signal.SIGKILL)  # and started since the listing
        self._report_exit(child)

    def send_signal(self, child: Child, sig: int, *, group: bool) -> None:
        """``heartwatch signal``: ``sig`` to the main process (supervisord's ``signal``), or
        with ``group`` to its whole process group (``systemctl kill``'s default). Through the
        pidfd when there is one, so a pid reused after the exit can never be hit."""
        if group:
            os.killpg(child.pid, sig)
        elif child._pidfd >= 0:
            signal.pidfd_send_signal(child._pidfd, sig)
        else:
            os.kill(child.pid, sig)

    def service_of_run(self, run_id: str) -> str | None:
        """The service whose current run is ``run_id``."""
        for child in self.children.values():
            if child.run_id == run_id:
                return child.service
        return None

    def kill_now(self, child: Child) -> None:
        """SIGKILL the child's group and its run's processes at once (the last resort)."""
        _kill_all(child.pid, find_processes_with_env(RUN_ID_VARIABLE, child.run_id))

    async def _escaped(self, child: Child) -> list[psutil.Process]:
        """Processes of this run outside its process group."""
        found = await self._loop.run_in_executor(
            None, find_processes_with_env, RUN_ID_VARIABLE, child.run_id
        )
        return [p for p in found if _group_of(p.pid) != child.pid]

    async def _gone(self, child: Child, escaped: list[psutil.Process]) -> None:
        await child.exited.wait()
        # The rest of the group and the escaped are not our children: no exit notification
        # reaches us for them, so poll, only while a stop is under way and for at most its
        # stop_timeout. (A wrapper such as ``sh -c`` exits first; its worker gets its time.)
        while _group_exists(child.pid) or any(_alive(p) for p in escaped):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def _read_output(self, child: Child, fd: int) -> bool:
        """Move what one pipe holds into the output; ``False`` once it has nothing now."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        stream = child._pipes[fd]
        if data:
            child.output.write(data, stream)
            if stream == "stderr":
                child.stderr_tail.receive(data)
            return True
        self._loop.remove_reader(fd)
        del child._pipes[fd]
        pipe = child.popen.stdout if stream == "stdout" else child.popen.stderr
        assert pipe is not None
        pipe.close()
        return False

    def _drain(self, child: Child) -> None:
        """Read what the pipes already hold, so that the exit's reason has its last words. A
        bounded number of reads: a descendant that keeps writing cannot hold the loop."""
        for fd in list(child._pipes):
            for _ in range(16):
                if fd not in child._pipes or not self._read_output(child, fd):
                    break

    def _reap(self, child: Child) -> None:
        returncode = child.popen.poll()
        if returncode is None:
            return
        self._loop.remove_reader(child._pidfd)
        os.close(child._pidfd)
        self._finish(child, returncode)

    def _wait_in_thread(self, child: Child) -> None:
        returncode = child.popen.wait()
        self._loop.call_soon_threadsafe(self._finish, child, returncode)

    def _finish(self, child: Child, returncode: int) -> None:
        """The main process exited. The exit is reported only once the whole run is gone."""
        child.returncode = returncode
        child.exited.set()
        self._drain(child)
        child.output.write(f"[heartwatch] pid {child.pid} {describe_exit(returncode)}\n".encode())
        if child.stopping:
            return  # finish_stop reports it, once the group and the escaped are gone too
        # A crash: leftovers of the run, in its group or escaped from it, would be a second
        # worker after the restart. The group dies at once; the escaped are found by run id in
        # a worker thread (a scan of every process), and only then is the exit reported.
        _signal_group(child.pid, signal.SIGKILL)
        self._sweeps.start(self._sweep_then_report(child))

    async def _sweep_then_report(self, child: Child) -> None:
        try:
            await self._loop.run_in_executor(None, _kill_run, child.run_id)
        finally:
            self._report_exit(child)

    def _report_exit(self, child: Child) -> None:
        if self.children.get(child.service) is child:
            del self.children[child.service]
        returncode = child.returncode
        assert returncode is not None
        # Its last words explain an end nobody asked for; a stop's are no reason.
        last_words = None if child.stopping or returncode == 0 else child.stderr_tail.text()
        self._on_exit(child.service, returncode, last_words)


def describe_spawn_error(
    error: OSError, argv: list[str], cwd: Path, search_path: str | None
) -> str:
    """Why ``argv`` did not start, as a person says it: ``no such executable 'nonexist'
    (command "nonexist --x")``, ``cwd /nonexistent does not exist``.

    ``Popen`` names the folder when changing into it failed, else the program; its own text
    would show ``[Errno 2]`` and a ``PosixPath(...)`` repr."""
    code, program = error.errno, argv[0]
    if error.filename is not None and os.fsdecode(error.filename) == os.fspath(cwd):
        if code == errno.ENOENT:
            return f"cwd {cwd} does not exist"
        if code == errno.ENOTDIR:
            return f"cwd {cwd} is not a folder"
        return f"cwd {cwd}: {_plain(error)}"
    if code == errno.ENOENT:
        found = (
            (cwd / program).exists()
            if "/" in program
            else shutil.which(program, path=search_path or os.defpath) is not None
        )
        # A script whose #! interpreter is missing fails with ENOENT too.
        why = (
            f"{program!r} exists, but its #! interpreter does not"
            if found
            else f"no such executable {program!r}"
        )
    elif code == errno.EACCES:
        why = f"{program!r} is not executable (permission denied)"
    elif code == errno.ENOEXEC:
        why = f"{program!r} is not a program this system can run"
    else:
        why = f"{program!r}: {_plain(error)}"
    return f'{why} (command "{shlex.join(argv)}")'


def _plain(error: OSError) -> str:
    """An OS error's text without the errno and the repr of its file name."""
    return error.strerror or type(error).__name__


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_each(processes: list[psutil.Process], sig: int) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)  # psutil checks it is still the same process


def find_processes_with_env(name: str, value: str) -> list[psutil.Process]:
    """Every process whose environment holds ``name=value`` (not this one).

    Reads ``/proc/<pid>/environ`` directly: about 35 µs a process, several times cheaper than
    going through psutil, since this runs on the crash path, before the restart.
    """
    wanted = f"{name}={value}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                environ = file.read()
            if wanted in environ.split(b"\0"):
                found.append(psutil.Process(int(entry)))
        except (OSError, psutil.Error):
            continue  # gone already, or not ours to read
    return found


def run_id_of(pid: int) -> str | None:
    """The ``HEARTWATCH_RUN_ID`` a process inherited, if it is inside one of our runs."""
    prefix = RUN_ID_VARIABLE.encode() + b"="
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return None
    for assignment in environ.split(b"\0"):
        if assignment.startswith(prefix):
            return assignment[len(prefix) :].decode(errors="replace")
    return None


def _kill_run(run_id: str) -> None:
    _signal_each(find_processes_with_env(RUN_ID_VARIABLE, run_id), signal.SIGKILL)


def _group_exists(pgid: int) -> bool:
    """Does the process group still have a member that is not a zombie?

    Zombies (already dead, waiting for their new parent, often init, to reap them) still count
    for ``killpg``; they cannot do anything and must not hold up a restart.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_all(pgid: int, processes: list[psutil.Process]) -> None:
    _signal_group(pgid, signal.SIGKILL)
    _signal_each(processes, signal.SIGKILL)
