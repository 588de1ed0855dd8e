"""The result cell as one versioned JSON Schema (draft 2020-12), enforced at every load.

:data:`CELL_SCHEMA` types every field a reader uses (``flatten``, the analyses, the tables, the
HTML report and its plots); ``docs/result-schema.md`` is its prose. Unknown fields are allowed
(2.x may add fields), known ones must have their types. Numbers are finite (no NaN, no ±Infinity:
the runner writes JSON with ``allow_nan=False``) and integers are JSON integers within int64 (not
``1.0``). Intervals are ``null`` or ``[lo, hi]`` with two numbers. ``schema_version`` must be 2.x:
1.0 cells (before the repetition protocol) have other fields under the same names and are refused
like any unknown version.

:func:`validate_cell` raises :class:`~host.errors.CellSchemaError` naming the file, the field (a
JSON pointer such as ``latency/latency_ms_p50_ci95``) and what is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

from jsonschema import Draft202012Validator, validators

from host.errors import CellSchemaError
from runners import SCHEMA_VERSION

#: The version this host writes (``runners.SCHEMA_VERSION``) and the versions it reads: 2.x.
CELL_SCHEMA_MAJOR = 2
SCHEMA_VERSION_PATTERN = r"^2\.[0-9]+$"
#: The version of the schema document itself (its ``$id``); it changes with the major version.
CELL_SCHEMA_ID = "https://edgegauge.invalid/schemas/cell-2.schema.json"
INT64 = 2 ** 63
#: The cell's identity, written by the host for every cell (measured or not): all four are strings.
CELL_KEYS = ("campaign", "device", "model_stem", "config")


def _finite_number(_checker, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -INT64 < value < INT64 if isinstance(value, int) else math.isfinite(value)


def _int64(_checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -INT64 < value < INT64


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({"number": _finite_number, "integer": _int64})
CellValidator = validators.extend(Draft202012Validator, type_checker=_TYPES)

# --------------------------------------------------------------------------- building blocks
NUM = {"type": ["number", "null"]}
INT = {"type": ["integer", "null"]}
STR = {"type": ["string", "null"]}
BOOL = {"type": ["boolean", "null"]}
STRS = {"type": ["array", "null"], "items": {"type": "string"}}
INTERVAL = {"oneOf": [{"type": "null"},
                      {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                       "minItems": 2, "maxItems": 2}]}


def _obj(props: dict, *, required: tuple = (), nullable: bool = True) -> dict:
    """An object (or null) whose listed properties have these types; other properties allowed."""
    out = {"type": ["object", "null"] if nullable else "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _nums(*names) -> dict:
    return {n: NUM for n in names}


VERDICT = _obj({"result": STR, "reasons": STRS, "warnings": STRS,
                "checks": {"type": ["object", "null"], "additionalProperties": BOOL}})
MEMORY = _obj({"memory_method": STR, "pid": INT, **_nums(
    "rss_mib_runtime_import", "rss_mib_before_session", "rss_mib_after_session", "rss_mib_peak",
    "rss_mib_session_delta", "rss_mib_inference_delta")})
LATENCY = _obj({
    "iterations": INT, "processes": INT, "sessions": INT, "samples_per_call": INT, "ci_resamples": INT,
    "level": STR, "clock": STR, "ci_method": STR, "percentile_method": STR, "cov_robust_method": STR,
    "median_ci_method": STR, "loop_start_monotonic_ns": INT, "loop_end_monotonic_ns": INT,
    **_nums("duration_s", "latency_ms_mean", "latency_ms_std", "latency_ms_min", "latency_ms_max",
            "latency_ms_p50", "latency_ms_p90", "latency_ms_p95", "latency_ms_p99", "latency_ms_p50_pooled",
            "latency_ms_p99_pooled", "latency_ms_p50_ci95_rel", "latency_ms_p50_rerun95_rel",
            "latency_ms_p50_ci95_within_rel", "latency_ms_p50_rerun95_within_rel", "cov", "cov_robust",
            "throughput_cps", "throughput_sps"),
    **{n: INTERVAL for n in ("latency_ms_p50_ci95", "latency_ms_p50_rerun95", "latency_ms_p50_ci95_within",
                             "latency_ms_p50_rerun95_within", "latency_ms_p99_ci95",
                             "latency_ms_p50_ci95_loop")},
    "campaign_level": _obj({"earlier_campaigns": INT, "campaigns": {"type": ["array", "null"]},
                            "sd_log": NUM, "method": STR, "source": STR, "df": NUM, "cell_sd_log": NUM,
                            "device": _obj({"campaigns": INT, "cells": INT, "reference_campaigns": INT,
                                            "reference_usual_campaigns": INT,
                                            **_nums("shared_sd_log", "cell_sd_log", "sd_log", "shared_df",
                                                    "df", "reference_usual_ms", "cell_prior_sd_log",
                                                    "cell_prior_df", "measured_sd_log",
                                                    "measured_shared_sd_log", "measured_df"),
                                            "prior": {"type": ["object", "null"]}}),
                            "machine_state": _obj({"runs": INT, "usual_campaigns": INT, "stretched": BOOL,
                                                   **_nums("reference_ms", "usual_ms", "shift_log")})}),
})
PROCESS = _obj({
    "round": INT, "slot": INT, "start_utc": STR, "wall_s": NUM, "status": STR, "latency_ms_p50": NUM,
    "verdict": VERDICT, "memory": MEMORY,
    "sessions": {"type": "array", "minItems": 1, "items": _obj({
        "latency_ms_p50": {"type": "number"}, "latency_ms_p99": NUM, "iterations": INT,
        **_nums("duration_s", "cov_robust", "load_ms", "first_inference_ms", "drift_rel", "outside_share",
                "others_cpu_share", "steal_share", "cpu_mhz_change_rel", "temp_c_change")},
        required=("latency_ms_p50",), nullable=False)},
}, required=("sessions",), nullable=False)
POWER = _obj({
    "meter": _obj({"meter": STR, "model": STR, "port": STR, "scope": STR, "update_interval_s": NUM}),
    "samples_file": STR, "samples_total": INT, "error": STR, "verdict": VERDICT,
    "measures": STR, "no_source": STR,  # on-host counters (not wall power); a local device with none
    "idle": _obj({"id": STR, "power_w_idle": NUM, "power_w_std": NUM, "n_samples": INT, "stable": BOOL}),
    "window_start_ns": INT, "window_end_ns": INT, "iterations": INT, "samples_in_window": INT,
    "samples_invalid_in_window": INT,
    **_nums("window_s", "update_interval_s", "max_gap_s", "energy_j_load", "energy_j_dynamic", "power_w_mean",
            "power_w_peak", "power_w_peak_1s", "power_w_p95", "power_w_idle", "power_w_idle_noise",
            "power_w_dynamic_peak", "power_w_dynamic_mean", "energy_mj_per_inference",
            "energy_mj_per_inference_dynamic", "throughput_cps", "throughput_per_watt",
            "throughput_per_watt_mean", "alignment_uncertainty_ms"),
})
THERMAL = _obj({
    "status": STR, "message": STR, "error": STR, "timeline_file": STR, "temp_c_max_zone": STR,
    "sources": {"type": ["array", "null"],
                "items": _obj({"kind": STR, "name": STR, "read": STR, "unit": STR})},
    "samples_total": INT, "samples_failed": INT, "samples_in_window": INT, "window_start_ns": INT,
    "window_end_ns": INT, "alignment": _obj({"offset_ns": INT, "uncertainty_ms": NUM, "method": STR}),
    **_nums("interval_s", "tick_ms_median", "clock_drop_rel", "window_s", "temp_c_max", "temp_c_start",
            "clock_mhz_min", "clock_mhz_max", "gpu_clock_mhz_min", "gpu_clock_mhz_max", "time_to_throttle_s"),
    "clocks": {"type": ["object", "null"],
               "additionalProperties": _obj(_nums("clock_mhz_min", "clock_mhz_max"))},
    "throttle_flags": {"type": ["object", "null"], "additionalProperties": STR},
    "verdict": VERDICT,
})
METRICS = _obj({  # counts as numbers: a FLOPs count may be written 4e9
    **_nums("params", "macs", "flops", "cdl", "nodes", "footprint_bytes", "weight_bytes",
            "largest_activation_bytes", "size_bytes"), "opset": INT, "ir_version": INT,
    "precision": STR, "params_rule": STR, "macs_reason": STR, "sha256": STR, "producer": STR,
    "error": {"type": ["object", "string", "null"]},  # metrics_or_error: {"type", "message"}
})
PROFILE = _obj({"layers": INT, "top": {"type": ["array", "null"], "items": _obj({
    "node": STR, "op": STR, "median_us": {"type": "number"}, "share": {"type": "number"}, "calls": INT},
    required=("node", "op", "median_us", "share", "calls"), nullable=False)}})
EARLY_STOPPING = _obj({"percentile": NUM, "confidence": NUM, "queries": INT, "queries_needed": INT,
                       "discarded": INT, "latency_ms": NUM, "method": STR})
#: a scenario's cell (paced, multi-stream: runners/scenarios.py; offline, server: runners/load.py;
#: host/campaign/scheduled.py)
SCENARIO = _obj({
    "streams": INT, "samples": INT, "completed": INT, "dropped": INT, "met": BOOL, "reason": STR,
    "seed": INT, "search": STR, "throughput_method": STR,
    "queries_per_stream": {"type": ["array", "null"], "items": INT},
    "throughput_sps_ci95": {"type": ["array", "null"], "items": NUM},
    "runs": {"type": ["array", "null"], "items": _obj({"qps_target": NUM, "qps_achieved": NUM,
                                                       "latency_ms_p99": NUM, "met": BOOL})},
    **_nums("throughput_sps", "throughput_sps_ci95_rel", "qps_target", "qps_achieved", "qps_peak",
            "latency_bound_ms", "latency_ms_p50", "latency_ms_p99", "latency_ms_p99_sample", "elapsed_s",
            "queue_ms_p50", "queue_ms_max"),
    "name": STR, "period_ns": INT, "samples_per_query": INT, "calls_per_query": INT, "sessions": INT,
    "slots": INT, "queries": INT, "skipped": INT, "queries_issued_late": INT, "deadline_misses": INT,
    "deadline_misses_completed_late": INT, "longest_miss_run": INT, "deadline": STR, "late_policy": STR,
    "latency": STR, "latency_ms_p99_early_stopping": EARLY_STOPPING,
    **_nums("rate_hz", "duration_s", "deadline_miss_pct", "rate_hz_achieved", "rate_hz_on_time",
            "service_ms_p50", "service_ms_p99", "issue_delay_ms_p50", "issue_delay_ms_max"),
})
LATENCY["properties"].update({"latency_ms_p99_sample": NUM, "latency_ms_p99_early_stopping": EARLY_STOPPING})
HOST = _obj({
    "config": _obj({"batch": INT, "threads": INT, "backend": STR, "slug": STR, "timeout_s": NUM,
                    "precision": STR}),
    "tool": {"type": ["object", "null"]}, "board": {"type": ["object", "null"]},
    "runner_process": {"type": ["object", "null"]},
    "runner_processes": {"type": ["array", "null"], "items": {"type": ["object", "null"]}},
})

#: The cell document (``docs/result-schema.md`` §3 lists its top-level keys in prose).
CELL_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": CELL_SCHEMA_ID,
    "title": f"edgegauge result cell {CELL_SCHEMA_MAJOR}.x",
    "type": "object",
    "required": ["schema_version", "status", "cell"],
    "properties": {
        "schema_version": {"type": "string", "pattern": SCHEMA_VERSION_PATTERN, "not": {"pattern": "\\s"}},
        "status": {"enum": ["ok", "invalid", "failed"]},
        "error": _obj({"type": STR, "category": STR, "message": STR}),
        "model": _obj({"path": STR, "host_path": STR, "sha256": STR, "size_bytes": INT, "precision": STR}),
        "runtime": _obj({"name": STR, "version": STR, "provider": STR, "threads": INT}),
        "configuration": _obj({"backend": STR, "batch": INT, "seed": INT}),
        "warmup": _obj({"iterations": INT, **_nums("first_inference_ms", "load_ms", "duration_s",
                                                   "latency_ms_last", "first_inference_ms_median")}),
        "latency": LATENCY,
        "scenario": SCENARIO,
        "sessions": {"type": ["array", "null"], "items": {"type": ["object", "null"]}},
        "repetitions": _obj({"processes": {"type": ["array", "null"], "items": PROCESS},
                             "stopped": STR, "spent_s": NUM, "protocol": {"type": ["object", "null"]},
                             "spread": {"type": ["object", "null"]}}),
        "samples": _obj({"file": STR, "format": STR, "iterations": INT, "thinned_every": INT, "bytes": INT}),
        "verdict": VERDICT,
        "realtime": _obj({"fps": NUM, "budget_ms": NUM, "statistic": STR, "latency_ms": NUM,
                          "meets_budget": BOOL, "headroom_ms": NUM}),
        "memory": MEMORY,
        "memory_profile": _obj({"memory_method": STR, "heap_mib_peak": NUM, "error": STR}),
        "manifest": _obj({"device": _obj({"hostname": STR, "cpu_model": STR, "cpu_count": INT, "arch": STR,
                                          "power_mode_key": STR, "memory_mib_total": NUM})}),
        "timestamps": _obj({"start_utc": STR, "end_utc": STR, "start_monotonic_ns": INT,
                            "end_monotonic_ns": INT}),
        "cell": _obj({k: {"type": "string"} for k in CELL_KEYS}, required=CELL_KEYS, nullable=False),
        "metrics": METRICS,
        "info": {"type": ["object", "null"]},
        "host": HOST,
        "power": POWER,
        "thermal": THERMAL,
        "precision": _obj({"name": STR}),
        "profile": PROFILE,
        "fidelity": _obj({"top1_agreement": NUM, "weights": STR, "warnings": STRS}),
        "fidelity_outputs": {"type": ["object", "null"]},
        "accuracy": _obj({"top1": NUM, "top5": NUM, "n": INT, "classes": INT, "batch": INT, "name": STR}),
        "warnings": STRS,
    },
}

CellValidator.check_schema(CELL_SCHEMA)
_VALIDATOR = CellValidator(CELL_SCHEMA)
HINT = ("move the file aside (it is not deleted by any host command), or re-run `host bench` on its campaign "
        "to re-measure the cell (the resume moves a cell that fails the schema aside first)")


def _pointer(path) -> str:
    return "/".join(str(p) for p in path)


def _problem(err) -> str:
    """What is wrong, in words: jsonschema's message, shortened for large values."""
    if err.validator == "type":
        return f"expected {' or '.join(map(str, _listed(err.validator_value)))}, got {_short(err.instance)}"
    if err.validator in ("pattern", "not") and list(err.path) == ["schema_version"]:
        return (f"schema_version {_short(err.instance)} is not {CELL_SCHEMA_MAJOR}.x (this host reads "
                f"{CELL_SCHEMA_MAJOR}.x cells; it writes {SCHEMA_VERSION})")
    if err.validator == "oneOf" and err.validator_value is INTERVAL["oneOf"]:
        return f"expected null or [lo, hi] with two finite numbers, got {_short(err.instance)}"
    if err.validator == "required":
        return "missing (a required field)"
    return err.message if len(err.message) < 200 else err.message[:200] + "…"


def _listed(value) -> list:
    out = value if isinstance(value, list) else [value]
    return ["finite number" if v == "number" else "int64 integer" if v == "integer" else v for v in out]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_cell(doc: object, path: str | Path) -> None:
    """Check ``doc`` (a parsed cell file) against :data:`CELL_SCHEMA`.

    Raises:
        CellSchemaError: it is not a 2.x cell; ``.path`` is ``path``, ``.field`` the JSON pointer of
        the first offending field (``""`` for the document itself).
    """
    err = min(_VALIDATOR.iter_errors(doc), key=lambda e: (len(e.path), list(map(str, e.path))), default=None)
    if err is None:
        return
    field = _pointer(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        field = "/".join(filter(None, [field, str(missing[0])]))
    what = "the document" if not field else field
    raise CellSchemaError(f"{path}: {what}: {_problem(err)}", path=path, field=field,
                          problem=_problem(err), hint=HINT)
