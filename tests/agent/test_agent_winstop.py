"""The Windows console-close handler's logic, run here on plain threads (the Win32 call itself
is made only on Windows: `install` is a no-op elsewhere)."""

from __future__ import annotations

import threading

from agent.platform import winstop


def test_ctrl_c_and_ctrl_break_are_left_to_python_signals() -> None:
    stop = threading.Event()
    console = winstop.ConsoleStop(stop, report=lambda line, **fields: None)
    assert console.handle(winstop.CTRL_C_EVENT) is False
    assert console.handle(winstop.CTRL_BREAK_EVENT) is False
    assert not stop.is_set()


def test_closing_the_console_stops_the_run_and_waits_for_it_to_finish() -> None:
    stop = threading.Event()
    lines: list[tuple[str, dict[str, object]]] = []
    console = winstop.ConsoleStop(stop, report=lambda line, **fields: lines.append((line, fields)))
    answer: list[bool] = []
    # Windows calls the handler on a thread of its own and ends the process when it returns
    handler = threading.Thread(
        target=lambda: answer.append(console.handle(winstop.CTRL_CLOSE_EVENT))
    )
    handler.start()
    assert stop.wait(5)
    handler.join(0.3)
    assert handler.is_alive(), "returned before the run finished: Windows would end it now"
    console.done.set()  # the run has finished its segment
    handler.join(5)
    assert answer == [True]
    assert lines == [("console window closed: stopping; finishing the current segment "
                      "(Windows allows 4.5 s)",
                      {"event": "stopping", "signal": "CTRL_CLOSE_EVENT"})]


def test_the_wait_ends_at_the_grace_windows_allows() -> None:
    assert all(grace < limit for (_, grace), limit in zip(
        winstop.STOP_EVENTS.values(), (5, 5, 20), strict=True))


def test_install_is_a_no_op_off_windows() -> None:
    stop = threading.Event()
    finished = winstop.install(stop, report=lambda line, **fields: None)
    finished()
    assert not stop.is_set()
