"""The fair protocol of a matrix: a tuning grid, selection on validation, a seed rule.

Every method (a dataset, cell and quantizer of the matrix) gets the same grid of
hyperparameters (``[tune]``: any ``[train]`` key or a parameter of every quantizer or cell) and
the same budget. A method's configuration is chosen on the *validation* metric of its tuning
seeds only (the test split never chooses); the chosen configuration is then evaluated on the
evaluation seeds. A tuned row whose choice sits at an edge of an ordered numeric grid axis is
*unbracketed*: its optimum may lie beyond the grid. With ``[tune] extend = N`` such a method gets
the next point beyond that edge on the grid's own spacing (geometric for a grid of positive
numbers, arithmetic otherwise), chosen again on validation, at most N times
(:func:`extension_value`); rows still at an edge are flagged. With a seed rule
(``seeds = {min, max, precision}``) the number of seeds of a comparison with the baseline is
fixed by Stein's two-stage procedure (:func:`qbench.stats.stein_seeds`): the first ``min``
seeds estimate the spread of the paired differences, which fixes the total, and that first-stage
spread is the interval's, which therefore keeps its 95% coverage. Seeds never stop on
significance, nor on a running half-width that happened to be small.

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

from qbench.grids import edges_of, extension_value, ordered_values
from qbench.metrics import declared_primary, declared_selection, first_test_column
from qbench.stats import stein_seeds, summarize, t975

#: Where a tuned key lives: ``train.lr`` is a ``[train]`` key, ``quantizer.x`` / ``cell.x`` parameters.
TUNE_AXES = ("train", "quantizer", "cell")

Method = tuple[str, str, str]  # (dataset label, cell label, quantizer label)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


@dataclass(frozen=True)
class SeedRule:
    """Stein's two-stage procedure: ``min`` seeds first; their paired differences' spread fixes
    the total (at most ``max``) that makes the 95% half-width at most ``precision`` (in the
    primary metric's unit)."""

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
    # equivalence margins: (dataset label, metric column, margin), the matrix's [compare] margin
    # over the dataset's declared default; none: equivalence is not tested
    margins: tuple[tuple[str, str, float], ...] = ()
    claim: str = "equivalence"  # "equivalence" | "non-inferiority" (what a margin tests)
    extend: int = 0  # grid extensions beyond an edge per method ([tune] extend); 0 in older stores

    def margin_for(self, dataset: str, metric: str) -> float | None:
        for label, column, margin in self.margins:
            if label == dataset and column == metric:
                return margin
        return None

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
        """No grid and no seed rule: a plain list of seeds, as in a matrix without a [protocol] table."""
        return not self.grid and self.rule is None

    @property
    def ordered_keys(self) -> tuple[str, ...]:
        """The grid axes whose values are ordered numbers (at least two): only they have edges."""
        return tuple(key for key, values in self.grid if ordered_values(values))

    def max_cases_per_method(self) -> int:
        """Cases one method may cost at most: the grid on the tuning seeds (extensions included)
        plus the other seeds."""
        points = len(self.points()) + self.extend * len(self.ordered_keys)
        tuning = points * len(self.tuning_seed_list)
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
            "margins": [[label, column, margin] for label, column, margin in self.margins],
            "claim": self.claim,
            "extend": self.extend,
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
            margins=tuple((str(a), str(b), float(m)) for a, b, m in data.get("margins", ())),
            claim=str(data.get("claim", "equivalence")),
            extend=int(data.get("extend", 0)),
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
        if self.grid:
            ordered = ", ".join(self.ordered_keys)
            if not ordered:
                lines.append("Bracketing: no tuned axis is an ordered numeric grid, so no choice sits at an edge.")
            elif self.extend:
                lines.append(
                    f"Bracketing: a method whose choice sits at an edge of {ordered} gets the next point beyond "
                    f"it on the grid's own spacing (geometric for positive values), trained on the same tuning "
                    f"seeds and chosen on validation as before, at most {self.extend} time(s); a row still at an "
                    "edge is flagged unbracketed. Every method gets the same grid; extra points go only to "
                    "methods whose optimum the grid does not bracket, so each tuned row is a bracketed optimum "
                    "(or flagged), and the budget table counts the extra runs."
                )
            else:
                lines.append(f"Bracketing: grids are not extended ([tune] extend = 0); a method whose choice sits at "
                             f"an edge of {ordered} is flagged unbracketed (its optimum may lie beyond the grid).")
        if self.rule:
            lines.append(
                f"Seeds: Stein's two-stage procedure. Seeds {', '.join(map(str, self.seeds))} are used in this "
                f"order; every method gets the first {self.rule.min}; the spread s of a comparison's paired "
                f"differences with {self.baseline or 'the baseline'} on those seeds fixes its total "
                f"N = max({self.rule.min}, ceil((t * s / {self.rule.precision:g})^2)), at most {self.rule.max} "
                f"(t: Student's 0.975 quantile with {self.rule.min - 1} degrees of freedom), and its interval is "
                "the mean of the N differences ± t s / sqrt(N), which keeps its 95% coverage whatever the spread."
            )
        else:
            lines.append(f"Seeds: {', '.join(map(str, self.seeds))} for every method.")
        if not self.baseline:
            lines.append(f"Verdicts: none, {NO_BASELINE}.")
            return lines
        lines.append(
            f"Verdicts: paired against {self.baseline} of the same cell, dataset and seed. The test that decides: "
            "the exact sign-flip (permutation) test for 6 or fewer paired seeds, differences without spread, "
            "or up to 20 seeds whose differences fail a Shapiro-Wilk normality check at 0.05; the t test "
            "otherwise. p-values are Holm-adjusted across the methods compared in one cell, dataset and "
            f"metric (difference and margin tests together); better / worse when the adjusted p-value of no "
            f"difference is below {self.alpha:g}. The sign-flip test's smallest two-sided p-value is 2 / 2^n "
            "(0.25 for 3 seeds, 0.0625 for 5): fewer than 6 paired seeds never support a verdict on their own."
        )
        if self.margins:
            margins = "; ".join(f"{column} ±{margin:g} on {label}" for label, column, margin in self.margins)
            if self.claim == "non-inferiority":
                lines.append(f"Non-inferiority margins: {margins}. A method is non-inferior when the one-sided test "
                             "rejects \"worse by the margin or more\" at the same adjusted level.")
            else:
                lines.append(f"Equivalence margins: {margins}. A method is equivalent when both one-sided tests "
                             "(TOST) reject a difference beyond the margin at the same adjusted level; "
                             "inconclusive when neither a difference nor equivalence is shown.")
        lines.append(
            "Equivalence was not tested for metrics without a margin: there, no difference found is "
            "inconclusive, not a match. Effect size is Cohen's d_z (mean difference / its standard deviation)."
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
    extension: int = 0  # 0: a point of the matrix's grid; k: added by the k-th extension beyond an edge


@dataclass
class Selection:
    """The chosen configuration of one method (``chosen`` is None while no point is eligible)."""

    method: Method
    chosen: str | None
    points: list[PointSummary] = field(default_factory=list)
    complete: bool = True  # every tuning case is stored
    # "bracketed" | "unbracketed" | "extending" (extension cases not stored yet) | "" (no ordered axis)
    bracket: str = ""
    edges: list[str] = field(default_factory=list)  # "train.lr=0.02 (top edge)" for every axis at an edge
    pending: list[str] = field(default_factory=list)  # extension points whose tuning cases are missing


@dataclass
class Comparison:
    """The seed rule's decision for one method against its baseline (Stein's two stages)."""

    method: Method
    baseline: Method
    seeds: int  # evaluation seeds the comparison uses (N)
    # "fixed seeds" | "precise" | "maximum reached" | "first stage too small" | "waiting for seeds"
    reason: str
    first_n: int = 0  # paired differences in the first stage
    first_std: float = math.nan  # their standard deviation: fixes N and the interval
    half_width: float = math.nan  # the interval's half-width with N differences: t * first_std / sqrt(N)
    paired_n: int = 0  # ok paired differences stored on the N seeds (fewer: seeds failed or not run yet)


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


def possible_extensions(protocol: Protocol) -> list[dict[str, Any]]:
    """Every point an extension could ever reach: each grid point with one ordered axis moved 1 to
    ``extend`` steps beyond either edge (a superset of what any run asks for: the steps beyond an
    edge do not depend on the results, only which are taken does)."""
    found: dict[str, dict[str, Any]] = {}
    for key, values in protocol.grid:
        if key not in protocol.ordered_keys:
            continue
        for side in ("top", "bottom"):
            known = list(values)
            for _ in range(protocol.extend):
                value = extension_value(known, side)
                known.append(value)
                for point in protocol.points():
                    moved = {**point, key: value}
                    found.setdefault(canonical(moved), moved)
    return list(found.values())


# -- selection ---------------------------------------------------------------------------------


def _summaries(rows: Sequence[Observation], points: Sequence[tuple[str, int]], tuning: set[int],
               direction: str) -> tuple[str | None, list[PointSummary], bool]:  # fmt: skip
    summaries, complete = [], True
    for point, extension in points:
        runs = {o.seed: o for o in rows if o.point == point and o.seed in tuning}
        ok = [runs[s].valid for s in sorted(runs) if runs[s].status == "ok" and not math.isnan(runs[s].valid)]
        complete = complete and len(runs) == len(tuning)
        mean = sum(ok) / len(ok) if ok else math.nan
        summaries.append(PointSummary(point, mean, len(ok), len(runs), len(ok) == len(tuning), extension))
    eligible = [s for s in summaries if s.eligible]
    chosen = None
    if eligible:
        best = min(eligible, key=lambda s: s.mean if direction == "min" else -s.mean)  # first on ties
        chosen = best.point
    return chosen, summaries, complete


def select(observations: Sequence[Observation], protocol: Protocol, directions: Mapping[str, str],
           points: Sequence[str] | None = None) -> dict[Method, Selection]:  # fmt: skip
    """Choose each method's configuration on the mean selection metric of its tuning seeds.

    ``directions``: {method's dataset label: "min" | "max"} of the selection metric. Without a
    grid every method has one configuration, chosen as it is. With ``protocol.extend``, a method
    whose choice sits at an edge of an ordered axis gets the point beyond it, chosen again, at
    most ``extend`` times (the planner runs the ``pending`` points' tuning cases first).
    """
    grid = list(points) if points is not None else [canonical(p) for p in protocol.points()]
    by_method: dict[Method, list[Observation]] = {}
    for obs in observations:
        by_method.setdefault(obs.method, []).append(obs)
    selections: dict[Method, Selection] = {}
    tuning = set(protocol.tuning_seed_list)
    ordered = {key: list(values) for key, values in protocol.grid if key in protocol.ordered_keys}
    for method in sorted(by_method):
        rows = by_method[method]
        if not protocol.grid:
            selections[method] = Selection(method, grid[0] if grid else canonical({}))
            continue
        direction = directions.get(method[0], "min")
        candidates = [(point, 0) for point in grid]
        values = {key: list(known) for key, known in ordered.items()}
        chosen, summaries, complete = _summaries(rows, candidates, tuning, direction)
        selection = Selection(method, chosen, summaries, complete)
        for step in range(1, protocol.extend + 1):
            if chosen is None or not complete or not ordered:
                break
            edges = edges_of(json.loads(chosen), values)
            if not edges:
                break
            fresh = []
            for key, side in edges:
                value = extension_value(values[key], side)
                values[key].append(value)
                fresh.append((canonical({**json.loads(chosen), key: value}), step))
            candidates += [c for c in fresh if c[0] not in {p for p, _ in candidates}]
            chosen, summaries, complete = _summaries(rows, candidates, tuning, direction)
            if not complete:  # the extension's tuning cases first; the choice waits for them
                pending = [p for p, _ in fresh if not all(
                    any(o.point == p and o.seed == s for o in rows) for s in tuning)]  # fmt: skip
                selection = Selection(method, chosen, summaries, False, "extending", pending=pending)
                break
            selection = Selection(method, chosen, summaries, complete)
        if ordered and selection.bracket != "extending":
            edges = edges_of(json.loads(selection.chosen), values) if selection.chosen is not None else []
            selection.bracket = "unbracketed" if edges else "bracketed" if selection.chosen is not None else ""
            selection.edges = [f"{key}={json.dumps(json.loads(selection.chosen)[key])} ({side} edge)"
                               for key, side in edges]  # fmt: skip
        selections[method] = selection
    return selections


def paired_differences(method_rows: Mapping[int, Observation], base_rows: Mapping[int, Observation],
                       seeds: Sequence[int]) -> list[float]:  # fmt: skip
    """The primary metric's differences method - baseline on ``seeds`` (in that order), ok pairs only."""
    diffs = []
    for seed in seeds:
        a, b = method_rows.get(seed), base_rows.get(seed)
        if a is None or b is None or a.status != "ok" or b.status != "ok":
            continue
        if math.isnan(a.primary) or math.isnan(b.primary):
            continue
        diffs.append(a.primary - b.primary)
    return diffs


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
        if selections[method].bracket == "extending":
            # its choice may still move: no seed beyond the tuning runs, which stand for the row meanwhile
            seeds[method] = len(protocol.tuning_seed_list)
            continue
        seeds[method] = protocol.min_seeds
        base = baselines.get((method[0], method[1]))
        if base is None or base == method or selections[base].chosen is None:
            continue
        if selections[base].bracket == "extending":
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
        diffs = paired_differences(mine, theirs, protocol.seeds)
        stats = summarize(diffs)
        return Comparison(method, base, len(protocol.seeds), "fixed seeds", int(stats["n"]), float(stats["std"]),
                          float(stats["ci95"]), int(stats["n"]))  # fmt: skip
    first = protocol.seeds[: rule.min]
    if not all(seed in mine and seed in theirs for seed in first):
        return Comparison(method, base, rule.min, "waiting for seeds")
    diffs = paired_differences(mine, theirs, first)
    stats = summarize(diffs)
    n1, s1 = int(stats["n"]), float(stats["std"])
    if n1 < 2:  # failures left no spread to estimate: the most the rule allows
        paired = len(paired_differences(mine, theirs, protocol.seeds[: rule.max]))
        return Comparison(method, base, rule.max, "first stage too small", n1, s1, paired_n=paired)
    total = stein_seeds(s1, n1, rule.precision, rule.min, rule.max)
    half = t975(n1 - 1) * s1 / math.sqrt(total)
    reason = "precise" if half <= rule.precision * (1 + 1e-9) else "maximum reached"
    paired = len(paired_differences(mine, theirs, protocol.seeds[:total]))
    return Comparison(method, base, total, reason, n1, s1, half, paired)
