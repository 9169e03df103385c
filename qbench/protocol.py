"""The fair protocol of a matrix: a tuning grid, selection on validation, a seed rule.

Every method (a dataset, cell and quantizer of the matrix) gets the same grid of
hyperparameters (``[tune]``: any ``[train]`` key or a parameter of every quantizer or cell) and
the same budget. A method's configuration is chosen on the *validation* metric of its tuning
seeds only (the test split never chooses); the chosen configuration is then evaluated on the
evaluation seeds. With a seed rule (``seeds = {min, max, precision}``) a comparison with the
baseline gets one more seed while the half-width of its paired difference's 95% interval is
wider than the target precision, until it is precise or the maximum is reached. The rule stops
on precision, never on significance, so it does not bias the verdicts.

The functions here are pure and work on :class:`Observation` rows, so that the run driver
(which cases to run next), the leaderboard (what to publish) and ``qbench validate`` (recompute
what was published) share one definition. No numpy, no pandas.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qbench.metrics import declared_primary, declared_selection, first_test_column
from qbench.stats import summarize

#: Where a tuned key lives: ``train.lr`` is a ``[train]`` key, ``quantizer.x`` / ``cell.x`` parameters.
TUNE_AXES = ("train", "quantizer", "cell")

Method = tuple[str, str, str]  # (dataset label, cell label, quantizer label)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


@dataclass(frozen=True)
class SeedRule:
    """Evaluate at least ``min`` seeds, at most ``max``; add seeds while a comparison's 95%
    half-width is wider than ``precision`` (in the primary metric's unit)."""

    min: int
    max: int
    precision: float


@dataclass(frozen=True)
class Protocol:
    """How the cases of a matrix are chosen and judged (see the module docstring)."""

    seeds: tuple[int, ...]  # candidate evaluation seeds, in the order they are used
    rule: SeedRule | None = None  # None: every seed of ``seeds`` is evaluated
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (("train.lr", (0.001, 0.003)), ...)
    tuning_seeds: int = 1  # the grid runs on the first ``tuning_seeds`` seeds
    select: str = ""  # validation metric that chooses; "" = the dataset's (valid_ + primary suffix)
    # quantizer name every method is compared with: the matrix's ``baseline``, else the quantizer
    # that declares ``baseline = True``; "" = none (no paired comparison, and the pages say so)
    baseline: str = ""
    alpha: float = 0.05  # family-wise error rate of the Holm-corrected verdicts

    # -- the grid ------------------------------------------------------------------------------
    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.grid)

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, in the file's order (one empty point without a grid)."""
        return [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in self.grid))]

    def point_of(self, train: Mapping[str, Any], params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The grid point a configuration sits on (``params``: {"quantizer": {...}, "cell": {...}})."""
        point = {}
        for key in self.keys:
            axis, name = key.split(".", 1)
            source = train if axis == "train" else params.get(axis, {})
            point[key] = source.get(name)
        return point

    # -- the seeds -----------------------------------------------------------------------------
    @property
    def min_seeds(self) -> int:
        return self.rule.min if self.rule else len(self.seeds)

    @property
    def max_seeds(self) -> int:
        return self.rule.max if self.rule else len(self.seeds)

    @property
    def tuning_seed_list(self) -> tuple[int, ...]:
        return self.seeds[: self.tuning_seeds] if self.grid else ()

    @property
    def trivial(self) -> bool:
        """No grid and no seed rule: a plain list of seeds, as in contract 1 matrices."""
        return not self.grid and self.rule is None

    def max_cases_per_method(self) -> int:
        """Cases one method may cost at most: the grid on the tuning seeds plus the other seeds."""
        tuning = len(self.points()) * len(self.tuning_seed_list)
        return tuning + self.max_seeds - len(self.tuning_seed_list)

    # -- serialisation -------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "rule": None if self.rule is None else {"min": self.rule.min, "max": self.rule.max,
                                                     "precision": self.rule.precision},
            "grid": [[key, list(values)] for key, values in self.grid],
            "tuning_seeds": self.tuning_seeds,
            "select": self.select,
            "baseline": self.baseline,
            "alpha": self.alpha,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Protocol:
        rule = data.get("rule")
        return cls(
            seeds=tuple(int(s) for s in data.get("seeds", ())),
            rule=None if not rule else SeedRule(int(rule["min"]), int(rule["max"]), float(rule["precision"])),
            grid=tuple((str(k), tuple(v)) for k, v in data.get("grid", ())),
            tuning_seeds=int(data.get("tuning_seeds", 1)),
            select=str(data.get("select", "")),
            baseline=str(data.get("baseline") or ""),
            alpha=float(data.get("alpha", 0.05)),
        )

    def describe(self) -> list[str]:
        """The protocol in sentences, for the pages."""
        lines = []
        if self.grid:
            grid = "; ".join(f"{key} in {{{', '.join(json.dumps(v) for v in values)}}}" for key, values in self.grid)
            metric = self.select or "validation metric of the dataset (valid_ for the primary test_ metric)"
            seeds = ", ".join(map(str, self.tuning_seed_list))
            lines.append(
                f"Tuning: every method gets the same grid ({grid}: {len(self.points())} configurations), "
                f"trained on seed(s) {seeds}; the configuration with the best mean {metric} is chosen "
                "(the test split never chooses; ties go to the first in grid order; a configuration that "
                "diverged or failed on a tuning seed is not eligible). The chosen configuration is then "
                "evaluated on the evaluation seeds; its own tuning run is reused as the evaluation run of that seed "
                "(selection never looks at the test split, so that run's test value is untouched by the choice)."
            )
        if self.rule:
            lines.append(
                f"Seeds: at least {self.rule.min} and at most {self.rule.max} (seeds "
                f"{', '.join(map(str, self.seeds))} in this order). A comparison with "
                f"{self.baseline or 'the baseline'} gets one "
                f"more seed while the half-width of its paired difference's 95% interval exceeds "
                f"{self.rule.precision:g}; seeds stop on precision, never on significance."
            )
        else:
            lines.append(f"Seeds: {', '.join(map(str, self.seeds))} for every method.")
        if not self.baseline:
            lines.append(f"Verdicts: none, {NO_BASELINE}.")
            return lines
        lines.append(
            f"Verdicts: paired t tests against {self.baseline} of the same cell, dataset and seed; p-values "
            f"Holm-Bonferroni adjusted across the methods compared in one cell, dataset and metric; "
            f"better / worse when the adjusted p-value is below {self.alpha:g}. Intervals are per-comparison "
            "95% intervals; effect size is Cohen's d_z (mean difference / its standard deviation)."
        )
        return lines


#: What the pages say when a comparison has no baseline.
NO_BASELINE = ("no paired comparison: no quantizer of these runs declares itself the baseline (baseline = True) "
               "and the matrix names none (add baseline = \"<quantizer name>\" to the matrix)")


def trivial_protocol(seeds: Iterable[int], baseline: str = "") -> Protocol:
    return Protocol(seeds=tuple(sorted(set(seeds))), baseline=baseline)


# -- metrics -----------------------------------------------------------------------------------


def primary_metric(directions: Mapping[str, str], declaration: Any = None) -> str:
    """The primary (test) metric of a record: the one its dataset declared (``record["metrics"]``),
    or, for a record made before datasets declared metrics, its first ``test_`` column
    alphabetically ("" when there is none)."""
    declared = declared_primary(declaration)
    if declared:
        return declared
    return first_test_column(list(directions))


def selection_metric(primary: str, directions: Mapping[str, str], protocol: Protocol,
                     declaration: Any = None) -> str:  # fmt: skip
    """The validation metric that chooses a configuration: the matrix's ``[tune] metric``, else the
    one the dataset declared, else ``valid_`` + the primary's suffix ("" when the records have none)."""
    if protocol.select:
        return protocol.select if protocol.select in directions else ""
    declared = declared_selection(declaration)
    if declared:
        return declared if declared in directions else ""
    if primary.startswith("test_"):
        candidate = "valid_" + primary[len("test_"):]
        if candidate in directions:
            return candidate
    return ""


# -- observations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What the protocol needs of one stored case."""

    method: Method
    quantizer: str  # component name: the baseline is found by it
    point: str  # canonical JSON of the grid point ("{}" without a grid)
    seed: int
    status: str
    valid: float  # the selection metric (NaN when missing)
    primary: float  # the primary test metric (NaN when missing)
    case_id: str = ""


@dataclass
class PointSummary:
    point: str
    mean: float  # mean selection metric over the tuning seeds (ok runs)
    n_ok: int
    n_stored: int
    eligible: bool


@dataclass
class Selection:
    """The chosen configuration of one method (``chosen`` is None while no point is eligible)."""

    method: Method
    chosen: str | None
    points: list[PointSummary] = field(default_factory=list)
    complete: bool = True  # every tuning case is stored


@dataclass
class Comparison:
    """The seed rule's decision for one method against its baseline."""

    method: Method
    baseline: Method
    seeds: int  # evaluation seeds the comparison uses
    reason: str  # "fixed seeds" | "precise" | "maximum reached" | "waiting for seeds"
    history: list[tuple[int, int, float]] = field(default_factory=list)  # (seeds, paired n, half-width)


@dataclass
class Decisions:
    """Everything the protocol decided from a set of observations."""

    selections: dict[Method, Selection]
    comparisons: dict[Method, Comparison]
    seeds: dict[Method, int]  # how many evaluation seeds each method uses
    candidate_seeds: tuple[int, ...] = ()  # the protocol's seeds, in order

    def used(self, obs: Observation) -> bool:
        """Whether a run counts in the published tuned row of its method."""
        selection = self.selections.get(obs.method)
        if selection is None or selection.chosen is None or obs.point != selection.chosen:
            return False
        return obs.seed in self.evaluation_seeds(obs.method)

    def evaluation_seeds(self, method: Method) -> set[int]:
        return set(self.candidate_seeds[: self.seeds.get(method, 0)])


def select(observations: Sequence[Observation], protocol: Protocol, directions: Mapping[str, str],
           points: Sequence[str] | None = None) -> dict[Method, Selection]:  # fmt: skip
    """Choose each method's configuration on the mean selection metric of its tuning seeds.

    ``directions``: {method's dataset label: "min" | "max"} of the selection metric. Without a
    grid every method has one configuration, chosen as it is.
    """
    grid = list(points) if points is not None else [canonical(p) for p in protocol.points()]
    by_method: dict[Method, list[Observation]] = {}
    for obs in observations:
        by_method.setdefault(obs.method, []).append(obs)
    selections: dict[Method, Selection] = {}
    tuning = set(protocol.tuning_seed_list)
    for method in sorted(by_method):
        rows = by_method[method]
        if not protocol.grid:
            selections[method] = Selection(method, grid[0] if grid else canonical({}))
            continue
        direction = directions.get(method[0], "min")
        summaries, complete = [], True
        for point in grid:
            runs = {o.seed: o for o in rows if o.point == point and o.seed in tuning}
            ok = [runs[s].valid for s in sorted(runs) if runs[s].status == "ok" and not math.isnan(runs[s].valid)]
            complete = complete and len(runs) == len(tuning)
            mean = sum(ok) / len(ok) if ok else math.nan
            summaries.append(PointSummary(point, mean, len(ok), len(runs), eligible=len(ok) == len(tuning)))
        eligible = [s for s in summaries if s.eligible]
        chosen = None
        if eligible:
            best = min(eligible, key=lambda s: s.mean if direction == "min" else -s.mean)  # first on ties
            chosen = best.point
        selections[method] = Selection(method, chosen, summaries, complete)
    return selections


def _paired_half_width(method_rows: dict[int, Observation], base_rows: dict[int, Observation],
                       seeds: Sequence[int]) -> tuple[int, float]:  # fmt: skip
    diffs = []
    for seed in seeds:
        a, b = method_rows.get(seed), base_rows.get(seed)
        if a is None or b is None or a.status != "ok" or b.status != "ok":
            continue
        if math.isnan(a.primary) or math.isnan(b.primary):
            continue
        diffs.append(a.primary - b.primary)
    stats = summarize(diffs)
    return int(stats["n"]), float(stats["ci95"])


def decide(observations: Sequence[Observation], protocol: Protocol, select_directions: Mapping[str, str],
           points: Sequence[str] | None = None) -> Decisions:  # fmt: skip
    """Selections, then the seed rule's decisions, from what is stored."""
    selections = select(observations, protocol, select_directions, points)
    chosen_rows: dict[Method, dict[int, Observation]] = {}
    for obs in observations:
        selection = selections.get(obs.method)
        if selection is not None and selection.chosen is not None and obs.point == selection.chosen:
            chosen_rows.setdefault(obs.method, {})[obs.seed] = obs
    baselines: dict[tuple[str, str], Method] = {}
    names = {obs.method: obs.quantizer for obs in observations}
    for method in sorted(selections):
        if names.get(method) == protocol.baseline:
            baselines.setdefault((method[0], method[1]), method)  # the first label, as the tables do
    seeds: dict[Method, int] = {}
    comparisons: dict[Method, Comparison] = {}
    for method in sorted(selections):
        if selections[method].chosen is None:
            seeds[method] = 0
            continue
        seeds[method] = protocol.min_seeds
        base = baselines.get((method[0], method[1]))
        if base is None or base == method or selections[base].chosen is None:
            continue
        comparisons[method] = _comparison(method, base, chosen_rows, protocol)
        seeds[method] = comparisons[method].seeds
    for comparison in comparisons.values():
        seeds[comparison.baseline] = max(seeds.get(comparison.baseline, 0), comparison.seeds)
    return Decisions(selections, comparisons, seeds, protocol.seeds)


def _comparison(method: Method, base: Method, rows: dict[Method, dict[int, Observation]],
                protocol: Protocol) -> Comparison:  # fmt: skip
    mine, theirs = rows.get(method, {}), rows.get(base, {})
    rule = protocol.rule
    if rule is None:
        n, half = _paired_half_width(mine, theirs, protocol.seeds)
        return Comparison(method, base, len(protocol.seeds), "fixed seeds", [(len(protocol.seeds), n, half)])
    count = rule.min
    history: list[tuple[int, int, float]] = []
    while True:
        used = protocol.seeds[:count]
        if not all(seed in mine and seed in theirs for seed in used):
            return Comparison(method, base, count, "waiting for seeds", history)
        n, half = _paired_half_width(mine, theirs, used)
        history.append((count, n, half))
        if n >= 2 and half <= rule.precision:
            return Comparison(method, base, count, "precise", history)
        if count >= rule.max:
            return Comparison(method, base, count, "maximum reached", history)
        count += 1
