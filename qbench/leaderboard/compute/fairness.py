"""The protocol applied to a frame of runs: tuned rows, selection, seed decisions, budget.

:func:`apply_protocol` marks every run with its role and keeps, per method, the runs of its
chosen configuration on its evaluation seeds (the *tuned row*); the other runs stay in the JSON
(every configuration is published). A method's runs made with another base configuration (an
earlier ``[train]`` recipe, say) are *superseded*: the newest base configuration of each method
is used, the others are counted on the page, so one record per configuration and seed is ever
aggregated. The decisions themselves come from :func:`qbench.protocol.decide`, which the run
driver used to choose the cases: the page shows the same choices the driver made.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from qbench.leaderboard.compute.frame import GROUP_KEY, RunsFrame
from qbench.protocol import Decisions, Observation, Protocol, canonical, decide, selection_metric, trivial_protocol

#: The run's role in the leaderboard (the JSON's ``runs`` table has it).
ROLES = ("evaluation", "tuning", "unselected", "superseded")
SELECTION_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "configuration", "extension", "metric",
                     "direction", "mean", "n_ok", "n_stored", "eligible", "chosen"]  # fmt: skip
#: One row per tuned method with an ordered grid axis: whether the grid brackets its choice.
BRACKET_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "configuration", "bracket", "edges",
                   "extensions"]  # fmt: skip
SEED_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "baseline_label", "first_stage_n",
                "first_stage_std", "seeds", "paired_n", "reason", "half_width", "precision"]  # fmt: skip
#: The budget in units that compare across machines (steps, sequences, epochs); seconds apart,
#: informational: they depend on the machine's load while the case ran.
BUDGET_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "cases", "tuning_cases", "extension_cases",
                  "evaluation_cases", "train_steps", "train_sequences", "train_epochs", "train_seconds"]  # fmt: skip


@dataclass
class FairView:
    """What the protocol adds to a leaderboard."""

    protocol: Protocol
    all_runs: RunsFrame  # every run, in canonical order, with its ``point``, ``base`` and ``role``
    used: RunsFrame  # the runs the tuned rows aggregate
    configuration: dict[tuple[str, str, str], str]  # method -> chosen configuration, as text
    selection: pd.DataFrame
    seeds: pd.DataFrame
    budget: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    bracketing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BRACKET_COLUMNS))


def point_text(point: str) -> str:
    """``{"train.lr":0.003}`` -> ``lr=0.003`` (a [train] key without its prefix)."""
    values = json.loads(point) if point else {}
    parts = []
    for key, value in values.items():
        name = key[len("train."):] if key.startswith("train.") else key
        parts.append(f"{name}={json.dumps(value)}")
    return ", ".join(parts)


def canonical_order(frame: RunsFrame) -> RunsFrame:
    """Runs sorted by what they are, not by when they finished: the same records give the same
    leaderboard bytes whatever the executor, worker count or completion order. The index keeps
    each run's position in the source (the curves are read by it)."""
    runs = frame.runs.copy()
    runs["position"] = np.arange(len(runs), dtype=np.int64) if "position" not in runs else runs["position"]
    keys = [*GROUP_KEY, "seed", "case_id"]
    ranks = _sort_ranks(runs, keys)
    if ranks is None:
        order = runs[keys].astype({k: str for k in GROUP_KEY}).sort_values(keys, kind="stable").index
        return _with_runs(frame, runs.loc[order])
    return _with_runs(frame, runs.iloc[np.lexsort(ranks[::-1])])


def _sort_ranks(runs: pd.DataFrame, keys: list[str]) -> list[np.ndarray] | None:
    """Each key as integer ranks in its sort order (labels as text, seeds as numbers), for a
    stable ``np.lexsort``: the order ``sort_values`` gives, without turning the categorical labels
    into 100,000 strings each. None where a key is not of the expected kind (then sort_values)."""
    ranks = []
    for key in keys:
        column = runs[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
            categories = column.cat.categories.to_numpy(dtype=object)
            if (codes < 0).any() or not all(isinstance(c, str) for c in categories):
                return None
            rank = np.empty(len(categories), dtype=np.int64)
            rank[np.argsort(categories, kind="stable")] = np.arange(len(categories))
            ranks.append(rank[codes])
        elif column.dtype.kind in "iu":
            ranks.append(column.to_numpy())
        elif pd.api.types.is_string_dtype(column.dtype):  # object, or pandas 3's str dtype
            values = column.to_numpy(dtype=object)
            if not all(isinstance(v, str) for v in values.tolist()):
                return None
            ranks.append(pd.factorize(values, sort=True)[0])
        else:
            return None
    return ranks


def _with_runs(frame: RunsFrame, runs: pd.DataFrame) -> RunsFrame:
    return replace(frame, runs=runs)


def _configs(runs: pd.DataFrame, protocol: Protocol) -> tuple[list[str], list[str]]:
    """Grid point and base configuration (everything but the tuned keys) of every run, as JSON."""
    cache: dict[tuple[str, ...], tuple[str, str]] = {}
    points, bases = [], []
    columns = [runs[c].tolist() for c in ("train", "quantizer_params", "cell_params", "dataset_params", "hardware")]
    tuned: dict[str, list[str]] = {}
    for key in protocol.keys:
        axis, name = key.split(".", 1)
        tuned.setdefault(axis, []).append(name)
    for row in zip(*columns, strict=True):
        found = cache.get(row)
        if found is None:
            train, qp, cp, dp, hw = (json.loads(text) if text else None for text in row)
            train, qp, cp = (v if isinstance(v, dict) else {} for v in (train, qp, cp))
            point = protocol.point_of(train, {"quantizer": qp, "cell": cp})
            strip = {axis: {k: v for k, v in values.items() if k not in tuned.get(axis, [])}
                     for axis, values in (("train", train), ("quantizer", qp), ("cell", cp))}  # fmt: skip
            found = cache[row] = (canonical(point), canonical({**strip, "dataset": dp, "hardware": hw}))
        points.append(found[0])
        bases.append(found[1])
    return points, bases


def apply_protocol(frame: RunsFrame, protocol: Protocol | None) -> FairView:
    """Decide from the runs as the driver did, mark roles, keep the tuned rows' runs."""
    frame = canonical_order(frame)
    runs = frame.runs.copy()
    if protocol is None:
        seeds = sorted({int(s) for s in runs["seed"].tolist() if s >= 0})
        protocol = trivial_protocol(seeds)
    if not protocol.baseline:  # records (or a stored protocol) from before matrices named their baseline
        protocol = replace(protocol, baseline=frame.declared.baseline)
    points, bases = _configs(runs, protocol)
    runs["point"] = points
    runs["base"] = bases
    methods = list(zip(*(runs[k].astype(str).tolist() for k in GROUP_KEY), strict=True))
    # The newest base configuration of each method (the source order is the store's: oldest first).
    newest: dict[tuple[str, str, str], tuple[int, str]] = {}
    for method, base, position in zip(methods, bases, runs["position"].tolist(), strict=True):
        if method not in newest or position > newest[method][0]:
            newest[method] = (position, base)
    current = np.array([newest[m][1] == b for m, b in zip(methods, bases, strict=True)], dtype=bool)
    notes = []
    superseded = int((~current).sum())
    if superseded:
        notes.append(f"{superseded} runs of earlier configurations of the same methods (another [train] recipe or "
                     "component parameters) are superseded by the newest configuration and not aggregated; they "
                     "are listed in leaderboard.json with role 'superseded'.")  # fmt: skip
    observations, select_directions = _observations(runs, methods, frame, protocol, current)
    grid = [canonical(p) for p in protocol.points()]
    decisions = decide(observations, protocol, select_directions, grid if protocol.grid else None)
    roles, used = _roles(runs, methods, current, decisions, protocol)
    runs["role"] = roles
    used_frame = _with_runs(frame, runs[used])
    configuration = {m: point_text(s.chosen) if s.chosen is not None else "none eligible"
                     for m, s in decisions.selections.items()}  # fmt: skip
    return FairView(
        protocol=protocol,
        all_runs=_with_runs(frame, runs),
        used=used_frame,
        configuration=configuration,
        selection=_selection_table(decisions, frame, protocol),
        seeds=_seed_table(decisions, protocol),
        budget=_budget_table(runs[current], GROUP_KEY, runs["role"][current], protocol.tuning_seed_list,
                             _extension_flags(runs[current], decisions)),
        notes=notes,
        bracketing=_bracket_table(decisions),
    )


def _observations(runs: pd.DataFrame, methods: list[tuple[str, str, str]], frame: RunsFrame, protocol: Protocol,
                  current: np.ndarray) -> tuple[list[Observation], dict[str, str]]:  # fmt: skip
    metric_of: dict[str, tuple[str, str]] = {}
    for label, info in frame.datasets.items():
        chosen_by = selection_metric(info.primary_metric, frame.directions, protocol, info.declaration)
        metric_of[label] = (info.primary_metric, chosen_by)
    directions = {label: frame.directions.get(chosen_by, "min") for label, (_, chosen_by) in metric_of.items()}
    values: dict[str, np.ndarray] = {}
    for name in {m for pair in metric_of.values() for m in pair if m}:
        values[name] = runs[name].to_numpy(dtype=float) if name in runs else np.full(len(runs), math.nan)
    # Only the runs on the protocol's seeds can change a decision (the grid runs on its first
    # seeds, the seed rule compares on them); each method's last run is kept as well, for its name.
    # On a store of many more seeds than the protocol's, that is far fewer than one per run.
    needed = current & runs["seed"].isin(list(protocol.seeds)).to_numpy()
    current_at = np.flatnonzero(current).tolist()
    last = dict(zip(itertools.compress(methods, current.tolist()), current_at, strict=False))
    needed[list(last.values())] = True
    at = np.flatnonzero(needed).tolist()
    quantizers, points, seeds = (runs[c].to_numpy(dtype=object)[at].tolist() for c in ("quantizer", "point", "seed"))
    statuses, case_ids = (runs[c].to_numpy(dtype=object)[at].tolist() for c in ("status", "case_id"))
    nan_values = np.full(len(runs), math.nan)
    observations = []
    for j, i in enumerate(at):
        method = methods[i]
        primary, chosen_by = metric_of.get(method[0], ("", ""))
        observations.append(Observation(
            method=method, quantizer=str(quantizers[j]), point=points[j], seed=int(seeds[j]), status=str(statuses[j]),
            valid=float(values.get(chosen_by, nan_values)[i]), primary=float(values.get(primary, nan_values)[i]),
            case_id=case_ids[j],
        ))  # fmt: skip
    return observations, directions


def _roles(runs: pd.DataFrame, methods: list[tuple[str, str, str]], current: np.ndarray, decisions: Decisions,
           protocol: Protocol) -> tuple[list[str], np.ndarray]:  # fmt: skip
    tuning = set(protocol.tuning_seed_list)
    roles, used = [], np.zeros(len(runs), dtype=bool)
    evaluation: dict[tuple[str, str, str], set[int]] = {}  # each method's seeds, built once, not once a run
    for i, (method, point, seed, is_current) in enumerate(
        zip(methods, runs["point"].tolist(), runs["seed"].tolist(), current.tolist(), strict=True)
    ):
        if not is_current:
            roles.append("superseded")
            continue
        selection = decisions.selections.get(method)
        chosen = selection.chosen if selection is not None else None
        if chosen is None and protocol.grid:
            # No configuration trained on every tuning seed: the row shows the failed tuning runs.
            roles.append("tuning")
            used[i] = True
        elif point == chosen and int(seed) in (
            evaluation[method] if method in evaluation
            else evaluation.setdefault(method, decisions.evaluation_seeds(method))
        ):  # fmt: skip
            roles.append("evaluation")
            used[i] = True
        elif protocol.grid and int(seed) in tuning:
            roles.append("tuning")
        else:
            roles.append("unselected")
    return roles, used


def _selection_table(decisions: Decisions, frame: RunsFrame, protocol: Protocol) -> pd.DataFrame:
    rows = []
    if protocol.grid:
        for method, selection in sorted(decisions.selections.items()):
            info = frame.datasets.get(method[0])
            primary, declaration = (info.primary_metric, info.declaration) if info else ("", None)
            metric = selection_metric(primary, frame.directions, protocol, declaration)
            for summary in selection.points:
                rows.append([*method, point_text(summary.point), summary.extension, metric,
                             frame.directions.get(metric, "min"), summary.mean, summary.n_ok, summary.n_stored,
                             summary.eligible, summary.point == selection.chosen])  # fmt: skip
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)


def _bracket_table(decisions: Decisions) -> pd.DataFrame:
    rows = []
    for method, selection in sorted(decisions.selections.items()):
        if not selection.bracket:
            continue
        configuration = point_text(selection.chosen) if selection.chosen is not None else "none eligible"
        extensions = sum(1 for s in selection.points if s.extension)
        rows.append([*method, configuration, selection.bracket, "; ".join(selection.edges), extensions])
    return pd.DataFrame(rows, columns=BRACKET_COLUMNS)


def _extension_flags(runs: pd.DataFrame, decisions: Decisions) -> np.ndarray:
    """Whether each run is a tuning run of a point beyond the grid (an extension)."""
    extra = {(method, s.point) for method, selection in decisions.selections.items() for s in selection.points
             if s.extension}  # fmt: skip
    if not extra:
        return np.zeros(len(runs), dtype=bool)
    methods = zip(*(runs[k].astype(str).tolist() for k in GROUP_KEY), strict=True)
    return np.array([(m, p) in extra for m, p in zip(methods, runs["point"].tolist(), strict=True)], dtype=bool)


def _seed_table(decisions: Decisions, protocol: Protocol) -> pd.DataFrame:
    rows = []
    precision = protocol.rule.precision if protocol.rule else math.nan
    for method, comparison in sorted(decisions.comparisons.items()):
        rows.append([*method, comparison.baseline[2], comparison.first_n, comparison.first_std, comparison.seeds,
                     comparison.paired_n, comparison.reason, comparison.half_width, precision])  # fmt: skip
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def _train_sizes(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per run: sequences trained on (steps x the recipe's batch) and the recipe's epochs; NaN where
    the record does not say. Steps and sequences count what ran (early stopping included); the
    epochs are the recipe's, read from the run's ``train`` (reading every curve to count the
    epochs run would cost seconds on a large store)."""
    batches, epochs = [], []
    cache: dict[str, tuple[float, float]] = {}
    for text in runs["train"].tolist():
        if text not in cache:
            recipe = json.loads(text) if text else None
            recipe = recipe if isinstance(recipe, dict) else {}
            batch, planned = recipe.get("batch"), recipe.get("epochs")
            cache[text] = (float(batch) if isinstance(batch, (int, float)) else math.nan,
                           float(planned) if isinstance(planned, (int, float)) else math.nan)  # fmt: skip
        batches.append(cache[text][0])
        epochs.append(cache[text][1])
    return runs["train_steps"].to_numpy(dtype=float) * np.array(batches, dtype=float), np.array(epochs, dtype=float)


def _budget_table(runs: pd.DataFrame, methods_of: tuple[str, ...], roles: pd.Series,
                  tuning_seeds: tuple[int, ...], extension: np.ndarray) -> pd.DataFrame:  # fmt: skip
    """Per method: every run of its current configuration, the tuning runs (the grid on the tuning
    seeds, the chosen one and the extensions included), the extension runs (points beyond the
    grid), the evaluation runs (the chosen one on each seed); steps, sequences and the recipe's epochs."""
    if runs.empty:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    on_tuning_seed = runs["seed"].isin(list(tuning_seeds)).to_numpy()
    sequences, epochs = _train_sizes(runs)
    frame = pd.DataFrame({
        **{k: runs[k].astype(str) for k in methods_of},
        "tuning": ((roles == "tuning").to_numpy() | ((roles == "evaluation").to_numpy() & on_tuning_seed)),
        "extension": extension & on_tuning_seed,
        "evaluation": (roles == "evaluation").to_numpy(),
        "train_steps": runs["train_steps"].to_numpy(dtype=float),
        "train_sequences": sequences,
        "train_epochs": epochs,
        "train_seconds": runs["train_seconds"].to_numpy(dtype=float) if "train_seconds" in runs else np.nan,
    })  # fmt: skip
    grouped = frame.groupby(list(methods_of), sort=True)
    table = pd.DataFrame({
        "cases": grouped.size(),
        "tuning_cases": grouped["tuning"].sum(),
        "extension_cases": grouped["extension"].sum(),
        "evaluation_cases": grouped["evaluation"].sum(),
        "train_steps": grouped["train_steps"].sum(min_count=1),
        "train_sequences": grouped["train_sequences"].sum(min_count=1),
        "train_epochs": grouped["train_epochs"].sum(min_count=1),
        "train_seconds": grouped["train_seconds"].sum(min_count=1),
    }).reset_index()  # fmt: skip
    return table[BUDGET_COLUMNS]
