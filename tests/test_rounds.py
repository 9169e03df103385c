"""The run's middle floors on their own: the matrix expanded once per run, the rounds (plan, run,
store, repeat) without the driver, one case runner bound per worker, one time-limit / death policy.

No model is trained here: a stand-in executor returns made-up records, so each test takes seconds.
"""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from qbench.driver import RunOptions, run_matrix
from qbench.errors import ExitCode
from qbench.executors.policy import CasePolicy
from qbench.executors.runner import CaseRunner, bound_once
from qbench.matrix import Case, Spec
from qbench.rounds import Rounds
from qbench.store import Store
from tests.test_bracketing import _drive, _matrix, _record


class MadeUpRecords:
    """An executor whose records are made up from each case (no training), noting each round it runs."""

    def __init__(self, matrix_name: str) -> None:
        self.matrix_name = matrix_name
        self.rounds: list[list[str]] = []

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        self.rounds.append([c.case_id for c in cases])
        for case in cases:
            yield _record(case, self.matrix_name)

    def close(self) -> None:
        pass


def test_the_rounds_run_every_phase_and_store_what_the_planner_asks_for(tmp_path):
    _, expanded = _matrix(tmp_path, extend=2)
    alone: dict = {}
    planned = _drive(expanded, alone)  # the planner's rounds, records kept in a dict
    lines: list[str] = []
    executor = MadeUpRecords(expanded.matrix.name)
    with Store(tmp_path / "qbench.sqlite") as store:
        rounds = Rounds(expanded, store)
        code = rounds.run(rounds.next(), executor, {"matrix_hash": "h"}, lines.append, progress=False)
        assert code is ExitCode.OK
        assert executor.rounds == planned, "the same rounds, in the same order"
        assert store.stored_ids() == set(alone)
        assert {r["provenance"]["matrix_hash"] for r in store.records()} == {"h"}
        assert set(alone) <= rounds.leaderboard_ids()
        assert rounds.next().cases == [], "nothing more to run"
    phases = [line.split(":")[0] for line in lines if "cases to run" in line]
    assert phases[0] == "tuning" and "extension" in phases and phases[-1] == "evaluation"


def _counting(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> Counter[str]:
    """Count every call of ``qbench.matrix``'s functions ``names``, through whichever module calls them."""
    import qbench.matrix

    counts: Counter[str] = Counter()
    for name in names:
        original = getattr(qbench.matrix, name)

        def counted(*args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _original(*args, **kwargs)

        for module in [m for m in sys.modules.values() if getattr(m, "__name__", "").startswith("qbench")]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, counted)
    return counts


def test_a_run_and_its_dry_run_expand_the_matrix_once(tmp_path, monkeypatch, capsys):
    """It was expanded again by every round and planning pass (13 call sites in driver and planning)."""
    path, expanded = _matrix(tmp_path, extend=2)
    executor = MadeUpRecords(expanded.matrix.name)
    monkeypatch.setattr("qbench.driver.executor_for", lambda *args, **kwargs: executor)
    counts = _counting(monkeypatch, ("expand", "methods"))
    out = tmp_path / "out"
    assert run_matrix(path, RunOptions(out=out, workers=1, progress=False)) is ExitCode.OK
    assert len(executor.rounds) >= 3, "tuning, extension and evaluation rounds ran"
    # methods: once for the expansion itself, once for the matrix's methods
    assert (counts["expand"], counts["methods"]) == (1, 2)
    counts.clear()
    capsys.readouterr()
    assert run_matrix(path, RunOptions(out=out, workers=1, dry_run=True)) is ExitCode.OK
    assert (counts["expand"], counts["methods"]) == (1, 2)
    assert "0 to run" in capsys.readouterr().err


def _a_case() -> Case:
    spec = Spec("float", {}, ())
    return Case("c0", "m", spec, Spec("rnn", {}, ()), Spec("pydoc-char", {}, ()), (), 0, {})


def test_one_policy_words_the_time_limit_and_the_deaths_of_every_executor():
    policy, case = CasePolicy(case_timeout=2.5), _a_case()
    assert policy.retries(1) and not policy.retries(2), "a case whose worker died is retried once"
    assert policy.time_left(10.0, 11.0) == 1.5 and policy.expired(10.0, 12.5) and not policy.expired(10.0, 12.4)
    assert CasePolicy().time_left(0.0, 1e9) is None and not CasePolicy().expired(0.0, 1e9)
    stopped = policy.timeout(case, "its worker (pid 7) was killed and replaced", "cpu")
    assert stopped["status"] == "error" and stopped["error"] == (
        "timeout: the case ran longer than the 2.5 s limit (--case-timeout / [limits] case_timeout); "
        "its worker (pid 7) was killed and replaced")  # fmt: skip
    ok = {"status": "ok"}
    assert policy.finished_late(ok, case, 2.5, "cpu") is ok
    late = policy.finished_late(ok, case, 3.0, "cpu")
    assert late["status"] == "error" and late["error"].endswith("its result is not kept")
    died = policy.died(case, "killed by SIGKILL (worker 0, pid 7) while running this case", "cpu")
    assert died["error"] == "worker died twice: killed by SIGKILL (worker 0, pid 7) while running this case"
    assert CasePolicy(max_attempts=3).died(case, "x", "cpu")["error"] == "worker died 3 times: x"


def _threads_now(case: Case, device: str) -> dict:
    import torch

    return {"status": "ok", "case_id": case.case_id, "device": device, "threads": torch.get_num_threads()}


def test_a_runner_is_bound_once_per_worker_with_its_threads_and_device():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        runner = CaseRunner(threads=2, run=_threads_now)
        bound = runner.bind()
        assert torch.get_num_threads() == 2, "binding fixes the worker's threads"
        assert bound(_a_case()) == {"status": "ok", "case_id": "c0", "device": "cpu", "threads": 2}
        # a Dask worker gets the runner with every task: it binds each run's runner once
        again = pickle.loads(pickle.dumps(runner))
        assert bound_once(runner) is bound_once(again)
        assert bound_once(CaseRunner(threads=2, run=_threads_now)) is not bound_once(runner)
    finally:
        torch.set_num_threads(before)


def _raises(case: Case, device: str) -> dict:
    raise SystemExit(3)


def test_an_exception_escaping_the_case_function_is_the_cases_error_record():
    record = CaseRunner(run=_raises).bind()(_a_case())
    assert record["status"] == "error" and "SystemExit(3)" in record["error"]
    assert "outside the runner" in record["error"]
