"""Runs one case: dataset -> cell with quantizer -> train -> evaluate -> export -> hardware -> record.

The runner never touches the store and never raises for a failing case: whatever happens inside
a case becomes a record with status ``ok``, ``diverged`` or ``error``, so executors only move
cases out and records back.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import traceback
from collections import Counter
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from qbench import record as R
from qbench import signalled
from qbench.components import Cell, Dataset, Quantizer
from qbench.errors import DatasetError
from qbench.host import Host, HostRecipe
from qbench.matrix import Case, build_quantizer
from qbench.metrics import MetricSet
from qbench.provenance import base_provenance, component_versions
from qbench.record import CELL, DATASET, QUANTIZER, failed, new_record
from qbench.roles import output_quantizer


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_safe(value: Any) -> Any:
    """numpy scalars and arrays to plain Python; NaN/inf kept as floats (JSON allows them in qbench)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def base_record(case: Case) -> dict[str, Any]:
    """The configuration part of a record, the same for every outcome (see :func:`qbench.record.new_record`)."""
    return new_record(
        case_id=case.case_id, matrix=case.matrix, hardware=[h.label for h in case.hardware], seed=case.seed,
        train=case.train, axes={axis: (spec.identity, spec.params, spec.label) for axis, spec in
                                ((QUANTIZER, case.quantizer), (CELL, case.cell), (DATASET, case.dataset))},
    )  # fmt: skip


def error_record(case: Case, message: str, status: str = "error", device: str = "cpu") -> dict[str, Any]:
    """A record for a case that could not finish (used by executors when a worker dies)."""
    record = base_record(case)
    failed(record, message, status, _now(), base_provenance(device))
    return record


def hardware_column_suffixes(case: Case) -> list[str]:
    """Column suffix per backend: none when a backend name appears once, ``@label`` otherwise."""
    counts = Counter(spec.name for spec in case.hardware)
    return ["" if counts[spec.name] == 1 else f"@{spec.label}" for spec in case.hardware]


def run_case(case: Case, device: str = "cpu", *, host: Host | HostRecipe | None = None,
             prepared: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one case and return its record; never raises for a failure inside the case.

    Torch's threads are the calling process's: an executor's worker fixes them once, when it binds
    its runner (:meth:`qbench.executors.runner.CaseRunner.bind`), and the record says how many.
    ``host``: the driver's plugin host, or the recipe a worker process rebuilds it from (default:
    the installed plugins). ``prepared``: ``{dataset label: data}`` prepared already (by the driver,
    in process, or by this worker's earlier cases); any other dataset is prepared here, and kept in
    ``prepared`` when it is a mutable mapping (a bound runner's: each worker prepares a dataset once).
    """
    record = base_record(case)
    record[R.STARTED] = _now()
    provenance = base_provenance(device)
    record[R.PROVENANCE] = provenance
    known = prepared if prepared is not None else {}
    try:
        _train_and_measure(case, device, record, provenance, host_from(host), known)
    except Exception as exc:  # a failing case is a result, not a crash of the matrix
        record[R.STATUS] = "error"
        record[R.ERROR] = f"{type(exc).__name__}: {exc}"
        record[R.TRACEBACK] = traceback.format_exc(limit=8)
    except BaseException as exc:  # SystemExit, or a KeyboardInterrupt no Ctrl-C raised: the plugin's error
        if signalled.is_real(exc):
            raise
        record[R.STATUS] = "error"
        record[R.ERROR] = signalled.plugin_raised(exc)
        record[R.TRACEBACK] = traceback.format_exc(limit=8)
    record[R.FINISHED] = _now()
    return _json_safe(record)


def host_from(host: Host | HostRecipe | None) -> Host:
    """The host itself, or the one its recipe builds (built once per recipe and worker process: a
    worker runs many cases; a recipe with in-process plugins never reaches another process)."""
    if isinstance(host, Host):
        return host
    recipe = host if host is not None else HostRecipe()
    if recipe.extra_plugins:
        return recipe.build()
    return _installed_host(recipe.load_entry_points, recipe.disabled)


@functools.lru_cache(maxsize=2)
def _installed_host(load_entry_points: bool, disabled: tuple[str, ...] | None = None) -> Host:
    # the driver's disabled plugins travel with the recipe: a Dask worker elsewhere has another environment
    return HostRecipe(load_entry_points=load_entry_points, disabled=disabled).build()


def _train_and_measure(case: Case, device: str, record: dict[str, Any],
                       provenance: dict[str, Any], host: Host, prepared: Mapping[str, Any]) -> None:  # fmt: skip
    import torch

    from qbench.datacache import cache_dir
    from qbench.training import train_and_evaluate

    provenance["torch_threads"] = torch.get_num_threads()
    entries = {
        "quantizer": host.registry("quantizer").get(case.quantizer.name),
        "cell": host.registry("cell").get(case.cell.name),
        "dataset": host.registry("dataset").get(case.dataset.name),
    }
    quantizer = cast(Quantizer, build_quantizer(case.quantizer, host))
    cell = cast(Cell, entries["cell"].cls(**case.cell.params))
    dataset = cast(Dataset, entries["dataset"].cls(**case.dataset.params))
    provenance["plugins"] = component_versions(case, host)
    record[R.DESCRIPTIONS] = {
        case.quantizer.label: quantizer.description,
        case.cell.label: cell.description,
        case.dataset.label: dataset.description,
    }
    record[R.DATASET_LICENCE] = getattr(dataset, "licence", "")
    declared = MetricSet.of(dataset)
    record[R.METRICS] = declared.as_record()
    record[R.PRIMARY_METRIC] = declared.primary_column
    record[R.SELECTION_METRIC] = declared.selection_column
    record[R.WEIGHT_BITS] = float(quantizer.bits_per_weight())
    # what the leaderboards read of the components travels with the record (they never load plugins)
    record[R.DECLARATIONS] = {R.QUANTIZER: {"name": case.quantizer.name,
                                            "baseline": getattr(quantizer, "baseline", False) is True}}  # fmt: skip

    data = prepared.get(case.dataset.label)
    if data is None:
        data = dataset.prepare(str(cache_dir()))
        if isinstance(prepared, MutableMapping):
            prepared[case.dataset.label] = data
    provenance["dataset_fingerprint"] = data.fingerprint
    if data.task != declared.task:
        raise DatasetError(f"dataset {case.dataset.name!r} declares task {declared.task!r} but prepared "
                           f"{type(data).__name__} (task {data.task!r})")  # fmt: skip
    result = train_and_evaluate(cell, quantizer, data, dict(case.train), case.seed, device, declaration=declared)

    record[R.STATUS] = result.status
    if result.status != "ok":
        record[R.ERROR] = result.message
    record.update(result.metrics)
    record[R.DIRECTIONS] = dict(result.directions)
    record[R.CURVE] = list(result.curve)
    record[R.TRAIN_SECONDS] = result.train_seconds
    record[R.TRAIN_STEPS] = int(result.steps)
    record[R.TOKENS_PER_SECOND] = result.tokens_per_second
    record[R.WEIGHT_COUNT] = int(result.weight_count)
    record[R.WEIGHT_BYTES] = result.weight_count * record[R.WEIGHT_BITS] / 8.0
    if result.exported is not None:
        stored = declared_storage(result.exported)
        if stored is not None:
            weights_bits, learned_bits = stored
            if case.quantizer.roles and result.weight_count:  # roles of different widths: the mean
                record[R.WEIGHT_BITS] = weights_bits / result.weight_count
            record[R.WEIGHT_BYTES] = (weights_bits + learned_bits) / 8.0
        elif (output := getattr(result.exported, "output_tensor", None)) is not None:  # an undeclared cell's stack
            stack_count = result.weight_count - int(output.values.size)
            record[R.WEIGHT_BYTES] = (stack_count * record[R.WEIGHT_BITS] + output.storage_bits) / 8.0
    first = "input" if cell.config.get("embedding", 0) == 0 else "embedding"
    # a quantized output layer (roles.output) keeps its bias float (qbench.training.output)
    record[R.FULL_PRECISION] = [first, "output" if output_quantizer(quantizer) is None else "output bias"]
    if result.status != "ok" or result.exported is None:
        return
    _run_hardware(case, host, result, record)


def backend_declarations(backend: Any, name: str, suffix: str) -> dict[str, Any]:
    """What the leaderboards read of a backend, its columns named as in the record (with ``suffix``):
    the columns its ``headline`` leaves out of the Markdown, and its ``leading_columns``."""
    headline = getattr(backend, "headline", None)
    columns = list(getattr(backend, "columns", {}))
    detail = [] if headline is None else [c for c in columns if c not in set(headline)]
    return {"backend": name, "detail_columns": [c + suffix for c in detail],
            "leading_columns": [c + suffix for c in getattr(backend, "leading_columns", ())]}  # fmt: skip


def declared_storage(exported: Any) -> tuple[float, float] | None:
    """(bits of the quantized values, bits of the learned quantizer state) of a declared stack's
    export, at each tensor's declared bits (``Quantizer.role_bits``, ``learned_state_bits``); None for a
    stack of an undeclared cell, whose export lists no tensors (its weight_bytes stays count x bits).
    A quantized output layer (``roles.output``) counts at its declared bits, its learned state too."""
    tensors = [t for layer in exported.layers for t in (layer.tensors or {}).values()]
    if not tensors:
        return None
    output = getattr(exported, "output_tensor", None)
    if output is not None:
        tensors.append(output)
    counts: dict[float, int] = {}
    for tensor in tensors:
        counts[float(tensor.bits)] = counts.get(float(tensor.bits), 0) + int(tensor.values.size)
    # one product per width: a single-width model's bytes are count x bits / 8 exactly, as before
    weights = sum(count * bits for bits, count in counts.items())
    learned = sum(t.state_elements * t.state_bits for t in tensors)
    learned += sum(layer.state_storage_bits() for layer in exported.layers)
    return float(weights), float(learned)


def _run_hardware(case: Case, host: Any, result: Any, record: dict[str, Any]) -> None:
    from qbench.errors import Unsupported

    for spec, suffix in zip(case.hardware, hardware_column_suffixes(case), strict=True):
        backend = host.create("hardware", spec.name, **spec.params)
        record[R.DESCRIPTIONS][spec.label] = backend.description
        # every declared column, "" (neither direction) included, so that each reaches the leaderboards
        for column, direction in backend.columns.items():
            record[R.DIRECTIONS][column + suffix] = direction
        record.setdefault(R.COST_AXES, [])
        record[R.COST_AXES] += [axis + suffix for axis in getattr(backend, "cost_axes", ())]
        record[R.DECLARATIONS].setdefault(R.HARDWARE, {})[spec.label] = backend_declarations(backend, spec.name, suffix)
        try:
            columns = backend.measure(result.exported, result.sample)
        except Unsupported as exc:
            record[R.HARDWARE_STATUS][spec.label] = f"unsupported: {exc}"
            continue
        except Exception as exc:  # one backend's bug must not discard the trained model's metrics
            record[R.HARDWARE_STATUS][spec.label] = f"error: {type(exc).__name__}: {exc}"
            continue
        problems = backend.measurement_problems(columns)
        if problems:  # stored silently, a wrong column would reach the leaderboards unowned and unchecked
            record[R.HARDWARE_STATUS][spec.label] = "error: " + "; ".join(problems)
            continue
        record[R.HARDWARE_STATUS][spec.label] = "ok"
        for column, value in columns.items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            record[column + suffix] = value
