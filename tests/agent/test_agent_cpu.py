"""The agent's CPU time by pipeline stage (agent/cpu.py)."""

from __future__ import annotations

import threading
import time

from agent.cpu import STAGE_NAMES, StageClock


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_stage_counts_the_cpu_its_thread_spends_not_its_waiting() -> None:
    clock = StageClock()
    with clock.stage("encode"):
        spin(0.05)
    with clock.stage("upload"):
        time.sleep(0.2)  # waiting for the network costs no CPU
    spent = clock.snapshot()
    assert spent["encode"] >= 0.05
    assert spent["upload"] < 0.05
    assert spent["capture"] == 0


def test_stages_from_several_threads_add_up_and_other_is_the_rest() -> None:
    clock = StageClock()

    def work() -> None:
        with clock.stage("capture"):
            spin(0.03)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = clock.snapshot()
    assert spent["capture"] >= 0.09  # each thread's own CPU, none counted twice or lost
    assert set(spent) == {*STAGE_NAMES, "other", "total"}
    assert spent["total"] >= sum(spent[name] for name in STAGE_NAMES)
    assert spent["other"] >= 0
    clock.reset()
    assert clock.snapshot()["capture"] == 0


def test_a_stage_that_raises_is_still_counted() -> None:
    clock = StageClock()
    try:
        with clock.stage("hash"):
            spin(0.02)
            raise ValueError("boom")
    except ValueError:
        pass
    assert clock.snapshot()["hash"] >= 0.02
