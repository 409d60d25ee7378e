"""What supervisord, PM2 and systemd users reach for, in the pure parts: ``autostart``,
``startsecs``, ``env_file``, ``user``/``group``/``umask``, ``restart`` by cause, timestamps on
captured lines, clearing them, and a crash's last stderr line in its reason."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from heartwatch.config import MAX_ENV_FILE_BYTES, ConfigError, config_warnings, parse_config
from heartwatch.core.events import RecoveryPlanned, ServiceState, Spawn, Stop, Transition
from heartwatch.core.outputlines import LastLine, LineStamper, readable_line
from heartwatch.core.spec import RestartByCause
from heartwatch.core.watchdog import Watchdog
from heartwatch.daemon.identity import IdentityError, resolve_run_as
from heartwatch.daemon.output import RotatingOutput
from heartwatch.logview.follow import FileStat, Follow, Truncated

S = ServiceState


def load(*services: dict[str, Any], base_dir: Path | None = None) -> Any:
    return parse_config({"service": list(services)}, base_dir=base_dir)


def problems(*services: dict[str, Any], base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(*services, base_dir=base_dir)
    return [str(p) for p in caught.value.problems]


def make(*services: dict[str, Any]) -> Watchdog:
    return Watchdog([s.spec() for s in load(*services).service], random=lambda: 0.5)


def spawn_all(wd: Watchdog, now: float) -> list[str]:
    names = []
    for action in wd.actions_to_take():
        if isinstance(action, Spawn):
            names.append(action.service)
            wd.receive_spawned(action.service, 100, now)
    return names


def reasons(wd: Watchdog, name: str) -> list[str]:
    return [
        e.reason for e in wd.events_to_take() if isinstance(e, Transition) and e.service == name
    ]


# -- autostart -------------------------------------------------------------------------------


def test_autostart_is_on_by_default_and_reaches_the_spec() -> None:
    """``autostart`` defaults to true; ``false`` is carried to the core's spec."""
    config = load({"name": "a", "command": "a"}, {"name": "b", "command": "b", "autostart": False})
    assert [s.spec().autostart for s in config.service] == [True, False]
    wd = Watchdog([s.spec() for s in config.service])
    assert [r.reason for r in wd.records()] == ["not started", "not started (autostart = false)"]


def test_a_service_without_autostart_still_starts_as_a_requirement() -> None:
    """Starting a service starts what it requires first, ``autostart = false`` or not."""
    wd = make(
        {"name": "emulator", "command": "emu", "autostart": False, "startsecs": 0},
        {"name": "collector", "command": "c", "requires": ["emulator"], "startsecs": 0},
    )
    wd.receive_start(["collector"], 0.0, "daemon started")
    assert spawn_all(wd, 0.0) == ["emulator"]
    assert spawn_all(wd, 0.0) == ["collector"]


# -- startsecs -------------------------------------------------------------------------------


def test_a_silent_service_is_ready_only_after_startsecs() -> None:
    """The default ``startsecs`` (1 s): running once up that long, not at its spawn."""
    wd = make({"name": "c", "command": "c"})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    assert wd.record("c").state is S.STARTING
    assert wd.next_deadline() == 1.0
    wd.tick(0.99)
    assert wd.record("c").state is S.STARTING
    wd.tick(1.0)
    assert wd.record("c").state is S.RUNNING
    assert wd.record("c").reason == "up for startsecs 1 s"


def test_a_ready_delay_longer_than_startsecs_keeps_its_reason() -> None:
    """``ready = "3s"`` (the demo's emulator) is ready after 3 s, said as before."""
    wd = make({"name": "emulator", "command": "emu", "ready": "3s"})
    wd.receive_start(["emulator"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.tick(3.0)
    assert wd.record("emulator").reason == "ready after 3 s"


def test_startsecs_zero_is_ready_at_start() -> None:
    """``startsecs = 0``: ready the moment its process exists, as before startsecs."""
    wd = make({"name": "c", "command": "c", "startsecs": 0})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    assert wd.record("c").reason == "ready at start"


@pytest.mark.parametrize("autorestart", ["always", "on-failure"])
@pytest.mark.parametrize("code", [0, 1])
def test_an_exit_within_startsecs_is_a_failed_start(autorestart: str, code: int) -> None:
    """An exit within startsecs is a failed start, whatever its code: restarted with the
    reason, never "running (ready at start)", even under on-failure with exit code 0."""
    wd = make({"name": "c", "command": "c", "autorestart": autorestart, "startsecs": "2s"})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.events_to_take()
    wd.receive_exit("c", code, 0.5)
    reason = f"exited within startsecs 2 s: exit code {code}"
    assert reasons(wd, "c") == [reason, "spawned"]  # the first failure: restarted at once
    assert wd.actions_to_take() == [Spawn("c", reason)]
    assert wd.record("c").last_exit == f"exit code {code}"


def test_an_exit_after_startsecs_is_an_ordinary_end() -> None:
    """After startsecs, exit code 0 under on-failure is a finished job (``exited``)."""
    wd = make({"name": "c", "command": "c", "autorestart": "on-failure"})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.tick(1.0)
    wd.receive_exit("c", 0, 5.0)
    assert wd.record("c").state is S.EXITED
    assert wd.record("c").reason == "exit code 0"


def test_a_beating_service_that_exits_within_startsecs_failed_its_start() -> None:
    """Readiness at the first heartbeat stays, but ending within startsecs is a failed start."""
    wd = make({"name": "c", "command": "c", "heartbeat_timeout": "10s", "startsecs": "3s"})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_message("c", "heartbeat", 0.5)
    assert wd.record("c").state is S.RUNNING
    wd.events_to_take()
    wd.receive_exit("c", 1, 2.0)
    assert reasons(wd, "c")[0] == "exited within startsecs 3 s: exit code 1"


def test_a_spawn_failure_is_not_said_twice() -> None:
    """A command that cannot start says so, without a startsecs prefix."""
    wd = make({"name": "c", "command": "c"})
    wd.receive_start(["c"], 0.0, "start")
    wd.actions_to_take()
    wd.events_to_take()
    why = "cannot start: no such executable 'c' (command \"c\")"
    wd.receive_spawn_failed("c", why[len("cannot start: ") :], 0.0)
    assert reasons(wd, "c")[0] == why
    assert wd.actions_to_take() == [Spawn("c", why)]


def test_startsecs_does_not_apply_to_a_watch_only_service() -> None:
    """A watch-only service has no process to stay up: ready at once, as before."""
    (service,) = load({"name": "phone", "startsecs": 5}).service
    assert service.spec().liveness.startsecs == 0.0


def test_startsecs_must_not_be_negative() -> None:
    assert problems({"name": "c", "command": "c", "startsecs": -1}) == [
        "service[0] (c).startsecs: a duration must be a finite number of seconds >= 0, not -1"
    ]


# -- the last stderr line in an exit's reason ------------------------------------------------


def test_an_exit_reason_carries_the_last_words() -> None:
    """``exit code 1: ModuleNotFoundError: ...`` in the reason, the next spawn's and last_exit."""
    wd = make({"name": "c", "command": "c", "startsecs": 0})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    words = "ModuleNotFoundError: No module named 'heartwatch'"
    wd.receive_exit("c", 1, 10.0, words)
    assert wd.record("c").last_exit == f"exit code 1: {words}"
    assert wd.actions_to_take() == [Spawn("c", f"exit code 1: {words}")]


def test_last_line_is_the_last_non_empty_one_fed_whole_or_byte_by_byte() -> None:
    """Cut anywhere, the same last line: an unfinished line counts, blank lines do not."""
    stream = (
        b'Traceback (most recent call last):\n  File "x.py", line 1\n'
        b"ModuleNotFoundError: No module named 'heartwatch'\n\n   \n"
    )
    whole, bytewise = LastLine(), LastLine()
    whole.receive(stream)
    for index in range(len(stream)):
        bytewise.receive(stream[index : index + 1])
    assert whole.text() == bytewise.text() == "ModuleNotFoundError: No module named 'heartwatch'"
    whole.receive(b"partial with no newline")
    assert whole.text() == "partial with no newline"
    assert LastLine().text() is None


def test_last_line_is_plain_text_and_bounded() -> None:
    """Colours and control characters removed (nothing a child wrote reaches a terminal or a
    page as codes), the text after a carriage return kept, long lines cut with an ellipsis."""
    assert readable_line(b"\x1b[31mError:\x1b[0m disk \x07full\x00") == "Error: disk  full"
    assert readable_line(b"10%\r50%\rfailed at 60%\r") == "failed at 60%"
    assert readable_line("evil \u202eexe.txt".encode()) == "evil  exe.txt"
    assert readable_line(b"\xff\xfe broken utf-8") == "\ufffd\ufffd broken utf-8"
    long = readable_line(b"x" * 10_000, max_chars=300)
    assert len(long) == 300
    assert long.endswith("…")
    secret = LastLine()
    secret.receive(b"pika.exceptions.AMQPConnectionError: amqp://guest:hunter2@broker:5672/\n")
    assert secret.text() == "pika.exceptions.AMQPConnectionError: amqp://guest:***@broker:5672/"
    tail = LastLine()
    tail.receive(b"y" * 100_000)  # an endless line is held bounded
    text = tail.text()
    assert text is not None
    assert len(text) == 300


# -- restart by cause ------------------------------------------------------------------------


def test_restart_takes_a_mode_or_a_table_by_cause() -> None:
    """``"group"`` is both causes; a table sets each (the other stays ``service``)."""
    config = load(
        {"name": "a", "command": "a", "restart": "group"},
        {"name": "b", "command": "b", "restart": {"hang": "group"}},
        {"name": "c", "command": "c"},
    )
    a, b, c = (s.spec() for s in config.service)
    assert a.restart == "group"
    assert b.restart == RestartByCause(hang="group", exit="service")
    assert (b.restart_mode("hang"), b.restart_mode("exit")) == ("group", "service")
    assert (c.restart_mode("hang"), c.restart_mode("exit")) == ("service", "service")


def test_restart_refuses_other_shapes_at_its_key() -> None:
    assert problems(
        {"name": "a", "command": "a", "restart": "grp"},
        {"name": "b", "command": "b", "restart": {"hang": "all", "crash": "group"}},
    ) == [
        'service[0] (a).restart: expected "service", "group" or a table such as '
        '{ hang = "group", exit = "service" }',
        "service[1] (b).restart.hang: Input should be 'service' or 'group'",
        "service[1] (b).restart.crash: unknown key `crash`",
    ]


def by_cause_pipeline() -> Watchdog:
    wd = make(
        {"name": "emulator", "command": "emu", "startsecs": 0},
        {
            "name": "collector",
            "command": "c",
            "requires": ["emulator"],
            "heartbeat_timeout": "3s",
            "restart": {"hang": "group", "exit": "service"},
        },
    )
    wd.receive_start(["collector"], 0.0, "start")
    spawn_all(wd, 0.0)
    spawn_all(wd, 0.0)
    wd.receive_message("collector", "heartbeat", 2.0)
    wd.events_to_take()
    return wd


def test_a_hang_restarts_the_group() -> None:
    """``hang = "group"``: a missed heartbeat stops the collector, then the emulator."""
    wd = by_cause_pipeline()
    wd.tick(5.0)
    actions = wd.actions_to_take()
    assert [type(a) for a in actions] == [Stop]
    assert actions[0].service == "collector"
    wd.receive_exit("collector", -15, 5.1)
    assert [a.service for a in wd.actions_to_take()] == ["emulator"]
    planned = [e for e in wd.events_to_take() if isinstance(e, RecoveryPlanned)]
    assert planned[0].members == ("emulator", "collector")


def test_an_exit_restarts_only_the_service() -> None:
    """``exit = "service"``: a crash restarts the collector alone; the emulator runs on."""
    wd = by_cause_pipeline()
    wd.receive_exit("collector", 1, 5.0)
    assert wd.actions_to_take() == [Spawn("collector", "exit code 1")]
    assert wd.record("emulator").state is S.RUNNING
    assert not [e for e in wd.events_to_take() if isinstance(e, RecoveryPlanned)]


# -- env_file --------------------------------------------------------------------------------


def test_env_file_is_read_at_load_relative_to_the_file_and_env_wins(tmp_path: Path) -> None:
    """dotenv lines (export, quotes, comments), later files over earlier, ``env`` over all;
    values literal (no ``${VAR}`` expansion)."""
    (tmp_path / "base.env").write_text('# shared\nexport A=1\nB="two words"\nC=${HOME}\n')
    (tmp_path / "local.env").write_text("A=2\nD=\n")
    (service,) = load(
        {"name": "c", "command": "c", "env_file": ["base.env", "local.env"], "env": {"B": "env"}},
        base_dir=tmp_path,
    ).service
    assert service.environment == {"A": "2", "B": "env", "C": "${HOME}", "D": ""}
    assert "two words" not in repr(service)  # values may be secrets: never printed


def test_a_changed_env_file_is_a_changed_configuration(tmp_path: Path) -> None:
    """Read at load, so that reload sees a change of the file's contents."""
    path = tmp_path / "worker.env"
    path.write_text("TOKEN=one\n")
    first = load({"name": "c", "command": "c", "env_file": "worker.env"}, base_dir=tmp_path)
    path.write_text("TOKEN=two\n")
    second = load({"name": "c", "command": "c", "env_file": "worker.env"}, base_dir=tmp_path)
    assert first.service[0] != second.service[0]
    assert first.service[0].revision() != second.service[0].revision()


def test_env_file_problems_are_at_its_key(tmp_path: Path) -> None:
    """Missing, unreadable, malformed and value-less lines: each said at ``env_file``."""
    (tmp_path / "bad.env").write_text("GOOD=1\nno equals sign\nLONELY\n")
    (tmp_path / "latin.env").write_bytes(b"A=\xe9\n")
    found = problems(
        {"name": "c", "command": "c", "env_file": ["bad.env", "missing.env", "latin.env"]},
        {"name": "d", "command": "d", "env_file": 5},
        base_dir=tmp_path,
    )
    assert found == [
        f"service[0] (c).env_file: {tmp_path}/bad.env line 2: not NAME=value; "
        f"{tmp_path}/bad.env line 3: a name without a value (write NAME= for an empty value); "
        f"cannot read {tmp_path}/missing.env: No such file or directory; "
        f"{tmp_path}/latin.env is not UTF-8 text",
        "service[1] (d).env_file: expected a path or a list of paths to dotenv files",
    ]


def test_env_file_must_be_a_regular_file_of_bounded_size(tmp_path: Path) -> None:
    """A FIFO, a device or a folder is refused without being read (a FIFO would block the
    load, and a reload with it, for good); a file beyond the cap is refused unread."""
    fifo = tmp_path / "pipe.env"
    os.mkfifo(fifo)
    (tmp_path / "huge.env").write_bytes(b"A=1\n" * (MAX_ENV_FILE_BYTES // 4 + 1))
    (tmp_path / "folder.env").mkdir()
    found: list[list[str]] = []
    env_files = ["pipe.env", "/dev/null", "folder.env", "huge.env"]
    service = {"name": "c", "command": "c", "env_file": env_files}
    loading = threading.Thread(target=lambda: found.append(problems(service, base_dir=tmp_path)))
    loading.start()
    loading.join(timeout=10)
    if loading.is_alive():  # let the blocked open go (a writer), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        loading.join(timeout=20)
        pytest.fail("reading a FIFO as env_file blocked")
    assert found == [
        [
            f"service[0] (c).env_file: {fifo} is not a regular file; "
            "/dev/null is not a regular file; "
            f"cannot read {tmp_path}/folder.env: Is a directory; "
            f"{tmp_path}/huge.env is larger than {MAX_ENV_FILE_BYTES // 1024} KiB "
            "(an env file is lines of NAME=value)"
        ]
    ]


def test_env_file_problems_name_the_line_never_its_text(tmp_path: Path) -> None:
    """A bad line may be a secret (a key pasted alone, a password file named by mistake):
    problems, which reach the log, the API and the journal, say its number only."""
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    shadow = "root:$6$Zq1s4lT$0d9x8ElongHashValue:19700:0:99999:7:::"
    (tmp_path / "secrets.env").write_text(
        f"GOOD=1\n{secret}\n{shadow}\nquoted='{secret}\nZERO=a\0b\n"
    )
    found = problems({"name": "c", "command": "c", "env_file": "secrets.env"}, base_dir=tmp_path)
    assert len(found) == 1
    for fragment in (secret, "MIIEv", "root", "$6$", "ZERO", "quoted"):
        assert fragment not in found[0].replace(str(tmp_path), "")
    where = f"{tmp_path}/secrets.env line"
    assert found == [
        f"service[0] (c).env_file: {where} 2: a name without a value (write NAME= for an "
        f"empty value); {where} 3: a name without a value (write NAME= for an empty value); "
        f"{where} 4: not NAME=value; {where} 5: a NUL character"
    ]


def test_env_file_names_are_environment_variable_names(tmp_path: Path) -> None:
    """``1BAD=x`` or ``A-B=x`` could not be read back by a shell (``$1BAD``): refused, as
    ``env`` refuses them, by line number."""
    (tmp_path / "names.env").write_text("GOOD_1=x\n1BAD=x\nA-B=y\n_ok=z\n")
    found = problems({"name": "c", "command": "c", "env_file": "names.env"}, base_dir=tmp_path)
    rule = "not an environment variable name (letters, digits and _, not starting with a digit)"
    assert found == [
        f"service[0] (c).env_file: {tmp_path}/names.env line 2: {rule}; "
        f"{tmp_path}/names.env line 3: {rule}"
    ]
    assert problems({"name": "c", "command": "c", "env": {"2X": "1"}}) == [
        "service[0] (c).env: '2X' is not an environment variable name (letters, digits and _, "
        "not starting with a digit)"
    ]


# -- user, group, umask ----------------------------------------------------------------------


def test_umask_is_octal_as_people_write_it() -> None:
    config = load(
        {"name": "a", "command": "a", "umask": "027"},
        {"name": "b", "command": "b", "umask": "22"},
        {"name": "c", "command": "c", "umask": "0o077"},
    )
    assert [s.umask for s in config.service] == [0o27, 0o22, 0o77]
    assert problems({"name": "a", "command": "a", "umask": "999"}) == [
        'service[0] (a).umask: expected an octal umask such as "022" or "0o027" (at most "777")'
    ]


@pytest.mark.parametrize("number", [77, 0o22, 0])
def test_a_umask_written_as_a_toml_number_is_refused_with_a_hint(number: int) -> None:
    """``umask = 77`` decodes to seventy-seven (0o115: files world-writable), and ``0o22`` to
    eighteen: a TOML number does not keep how it was written, so neither is guessed at."""
    assert problems({"name": "a", "command": "a", "umask": number}) == [
        'service[0] (a).umask: write the umask as a string, in octal: umask = "077" '
        "(a TOML number does not keep how it was written: 77 and 0o77 are different umasks)"
    ]


def test_an_unknown_user_or_group_is_a_problem_at_its_key() -> None:
    assert problems(
        {"name": "a", "command": "a", "user": "no-such-user-hw", "group": "nope-hw"}
    ) == [
        "service[0] (a).user: no user 'no-such-user-hw' on this machine",
        "service[0] (a).group: no group 'nope-hw' on this machine",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_run_as_nobody_has_its_home_and_groups() -> None:
    """As root: nobody's uid, its own group and groups, HOME/USER/LOGNAME as ``su -`` sets."""
    run_as = resolve_run_as("nobody", None)
    assert run_as is not None
    assert run_as.uid == 65534
    assert run_as.gid in run_as.groups
    assert dict(run_as.environment) == {
        "HOME": "/nonexistent",
        "USER": "nobody",
        "LOGNAME": "nobody",
    }
    assert resolve_run_as(None, None) is None


def test_run_as_another_user_without_root_is_refused_plainly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon that is not root cannot switch: a failed start that says why."""
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(IdentityError) as caught:
        resolve_run_as("nobody", None)
    assert str(caught.value) == (
        "cannot run as user 'nobody' without root (running as '4242'; only root may switch "
        "to another user or group)"
    )
    with pytest.raises(IdentityError):
        resolve_run_as(0, None)  # root's uid is another user too


# -- captured output: timestamps and clearing ------------------------------------------------


STAMP = b"T "


def test_timestamps_start_every_line_fed_whole_or_byte_by_byte() -> None:
    """Each line gets the time once, at its start, however its bytes were cut."""
    data = b"one\ntwo\nthree, unfinished"
    whole = LineStamper().stamp("stdout", data, STAMP)
    stamper = LineStamper()
    bytewise = b"".join(stamper.stamp("stdout", data[i : i + 1], STAMP) for i in range(len(data)))
    assert whole == bytewise == b"T one\nT two\nT three, unfinished"
    assert stamper.stamp("stdout", b" ... done\n", STAMP) == b" ... done\n"


def test_another_stream_ends_an_unfinished_line_first() -> None:
    """stderr writing into stdout's unfinished line starts a line of its own."""
    stamper = LineStamper()
    out = stamper.stamp("stdout", b"progress 50%", STAMP)
    out += stamper.stamp("stderr", b"warning: slow\n", STAMP)
    out += stamper.stamp("stdout", b" 100%\n", STAMP)
    assert out == b"T progress 50%\nT warning: slow\nT  100%\n"


def test_output_timestamps_are_iso_8601_with_milliseconds(tmp_path: Path) -> None:
    output = RotatingOutput(tmp_path / "c.log", 0, 0, timestamps=True)
    output.write(b"hello\n", "stdout")
    output.close()
    stamp, _, text = (tmp_path / "c.log").read_text().partition(" ")
    assert text == "hello\n"
    # 2026-12-01T11:20:18.123+00:00
    assert len(stamp) == 29
    assert stamp[10] == "T"
    assert stamp[19] == "."
    assert stamp[23] in "+-"


def test_clear_empties_the_file_and_removes_its_backups(tmp_path: Path) -> None:
    """Truncated in place (the writer goes on at its start), numbered backups removed."""
    output = RotatingOutput(tmp_path / "c.log", 10, 2)
    for _ in range(3):
        output.write(b"0123456789")  # each write rotates the previous one away
    (tmp_path / "c.log.old").write_text("not a backup of ours")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.log",
        "c.log.1",
        "c.log.2",
        "c.log.old",
    ]
    assert output.clear() == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.old"]
    output.write(b"after\n")
    output.close()
    assert (tmp_path / "c.log").read_bytes() == b"after\n"


def test_check_warns_of_a_user_a_daemon_that_is_not_root_cannot_switch_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``heartwatch check`` run as another user than root says what the daemon would."""
    config = load({"name": "a", "command": "sh", "user": "nobody"})
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not [w for w in config_warnings(config) if w.path.endswith(".user")]
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert [str(w) for w in config_warnings(config) if w.path.endswith(".user")] == [
        "service[0] (a).user: cannot run as user 'nobody' without root (running as '4242'; "
        "only root may switch to another user or group)"
    ]


def test_a_viewer_following_the_file_sees_the_clear_as_a_truncation(tmp_path: Path) -> None:
    """Cleared in place: the same file (inode) as the follower holds, now shorter than what
    it read, which the follower's rules call a truncation (read again from 0)."""
    output = RotatingOutput(tmp_path / "c.log", 0, 0)
    output.write(b"line one\nline two\n")

    def stat() -> FileStat:
        found = (tmp_path / "c.log").stat()
        return FileStat(found.st_dev, found.st_ino, found.st_size)

    before = stat()
    follow = Follow(before, offset=before.size)
    output.clear()
    after = stat()
    output.close()
    assert after.same_file(before)
    assert follow.next_step(after, after) == Truncated(lost_after=before.size)
