"""``host bench``: its options (grouped in ``--help`` panels), the steps from the command line to
one :class:`host.campaign.options.CampaignOptions`, the live progress lines and the result table.
Runtime options come from the runtime's descriptor as ``-o NAME=VALUE``; ``--threads`` is the generic
matrix axis every configuration's name carries."""

from __future__ import annotations

import dataclasses
import math
from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

from host.cli.bench_compile import CompileOptionOpt, compile_axis
from host.cli.bench_progress import bench_power_factory, run_bench
from host.cli.bench_scenario import PANEL as SCENARIO_PANEL
from host.cli.bench_scenario import (
    DurationOpt,
    LatencyBoundOpt,
    QpsOpt,
    RateHzOpt,
    SamplesPerQueryOpt,
    ScenarioOpt,
    SearchRunsOpt,
    StreamsOpt,
    apply_scenario,
    frame_budget,
)
from host.cli.lab import (
    AcceptNewOpt,
    AllOpt,
    ConnectTimeoutOpt,
    DeviceOpt,
    GroupOpt,
    InventoryOpt,
    KnownHostsOpt,
    board_options,
    select,
)
from host.cli.lab import fail as _fail
from host.cli.options import (
    BUDGET_PARAMS,
    DAY_S,
    MAX_BATCH,
    MAX_SEED,
    MAX_THREADS,
    AccuracyMinOpt,
    ColumnsOpt,
    EnergyMjOpt,
    FpsOpt,
    LatencyMsOpt,
    MemoryMibOpt,
    MemoryScopeOpt,
    PowerWOpt,
    Scope,
    Statistic,
    StatisticOpt,
    WideOpt,
    bounded,
    budgets_of,
    in_panels,
    parse_shapes,
    table_view,
)
from host.cli.places import CoordinatorOpt, PlaceOpt, PlacesOpt, held_devices, wants_of
from host.cli.power import PowerCyclesOpt, bench_cycler
from host.cli.signals import interruptible
from host.errors import CampaignInterrupted, DiskFullError, HostError
from runners.backends import implemented_names

if TYPE_CHECKING:
    pass

EXAMPLES = Path("examples/models")


def _default_models() -> List[Path]:
    if EXAMPLES.exists():
        return [EXAMPLES]
    from host import REPO_ROOT

    packaged = REPO_ROOT / EXAMPLES
    return [packaged]


ModelsArg = Annotated[Optional[List[Path]], typer.Argument(
    help="ONNX files or folders (searched recursively) [default: examples/models]")]
ResultsOpt = Annotated[Path, typer.Option(help="results root folder")]
CampaignOpt = Annotated[Optional[str], typer.Option(
    help="campaign name [default: UTC timestamp]; an existing campaign is resumed")]
RetryFailedOpt = Annotated[bool, typer.Option(
    "--retry-failed", help="when resuming, also re-run cells that failed on the board")]
BreakLockOpt = Annotated[bool, typer.Option(
    "--break-lock", help="take a board whose lock another live run holds (kills that holder; logged)")]
WaitLockOpt = Annotated[float, bounded(
    0, 7 * DAY_S, "seconds to wait for a board another run holds (a countdown on stderr) before its cells "
    "fail as busy; also how long --place waits in a coordinator's queue", "--wait-lock")]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="fail at once on a board another run holds (same as --wait-lock 0)")]
BackendOpt = Annotated[Optional[str], typer.Option(
    help=f"runner backend: {' | '.join(implemented_names())} [each device's runtime]")]
BatchOpt = Annotated[str, typer.Option(
    help="value of a dynamic batch dimension; comma-separated for a sweep (1,8,32): one cell per batch, "
         "throughput in samples/s")]
ShapeOpt = Annotated[Optional[List[str]], typer.Option(help="full input shape NAME=1x3x224x224 (repeatable)")]
ThreadsOpt = Annotated[Optional[int], bounded(
    0, MAX_THREADS, "the threads axis of the matrix, for every runtime: intra-op threads of a runtime "
    "that declares a threads option (0 = all CPUs); part of every configuration's name, e.g. ort-b1-t2 "
    "[all CPUs]")]
OptionOpt = Annotated[Optional[List[str]], typer.Option(
    "--option", "-o", help="runtime option NAME=VALUE as the runtime's descriptor declares it "
    "(`host runtimes` lists them), e.g. -o opt_level=basic, "
    "-o io_binding=false (repeatable)")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="preset: ±10 %, 5+ processes, 8 s per cell")]
RigorousOpt = Annotated[bool, typer.Option("--rigorous", help="preset: ±2 %, 10+ processes × 2 sessions, "
                                           "180 s per cell")]
TargetCiOpt = Annotated[Optional[float], bounded(
    0.0001, 0.9999, "stop a cell when its p50's 95 % CI is within ± this share [0.05]")]
MaxCellSOpt = Annotated[Optional[float], bounded(
    0.001, DAY_S, "runner wall time a cell may spend before it stops short, seconds [20]", "--max-s")]
MinProcessesOpt = Annotated[Optional[int], bounded(5, 100_000, "fewest runner processes per cell [5]")]
MaxProcessesOpt = Annotated[Optional[int], bounded(5, 100_000, "most runner processes per cell [200]")]
SessionsOpt = Annotated[Optional[int], bounded(1, 1000, "fresh sessions per runner process [1]")]
OrderSeedOpt = Annotated[int, bounded(0, MAX_SEED, "seed of the interleaved run order")]
class Memory(str, Enum):
    """``--memory``: how a cell's memory is measured."""
    rss = "rss"
    massif = "massif"
    memray = "memray"


class Calibration(str, Enum):
    """``--calibrate``: the int8 calibration method."""
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


MemoryOpt = Annotated[Memory, typer.Option(
    help="memory method: rss (every process's VmRSS/VmHWM), or massif / memray: one extra process "
         "per cell under that heap profiler (must be installed where the runner runs)")]
PrecisionOpt = Annotated[str, typer.Option(
    help="precisions to measure, comma-separated: fp32 (the model as given), fp16, int8 (static QDQ), "
         "int8-dynamic; the host makes each variant (cached, recipe in the cell)")]
DatasetOpt = Annotated[Optional[Path], typer.Option(
    help="folder with inputs.npy + labels.npy, or an image folder (one sub-folder per class) with a "
         "preprocess.json: top-1/top-5 accuracy on the device for every model [each model's own, from "
         "its .info]")]
CalibrateOpt = Annotated[Calibration, typer.Option(help="int8 calibration method")]
CalibrationDataOpt = Annotated[Optional[Path], typer.Option(
    help="int8 calibration inputs: a folder of .npy/.npz arrays, or images with a preprocess.json "
         "[the model dataset's calibration/ images, else seeded random data, labelled so]")]
CountersOpt = Annotated[bool, typer.Option(
    "--counters", help="hardware counters (perf stat) around the first session's timed loop, per inference; "
                       "unsupported events recorded as such, never 0")]
ProfileOpt = Annotated[bool, typer.Option(
    "--profile", help="per-layer profile of each cell from one extra, untimed process (ort: session "
                      "profiling); shown by host report")]
ReferenceOpt = Annotated[bool, typer.Option(
    "--reference/--no-reference", help="run the reference workload once per round per board (about 1 s "
                                       "each): its drift shows a machine-wide trend, reported once")]
AutoCalibrateOpt = Annotated[bool, typer.Option(
    "--auto-calibrate/--no-auto-calibrate", envvar="EDGEGAUGE_AUTO_CALIBRATE",
    help="on a device's first campaign (fewer than 2 in its history), run the reference workload 6 times "
         "first (about 6 s), so the intervals carry a between-campaign spread; env EDGEGAUGE_AUTO_CALIBRATE")]
WarmupItersOpt = Annotated[Optional[int], bounded(0, 10**9, "warm-up minimum iterations [10]")]
WarmupSOpt = Annotated[Optional[float], bounded(0, DAY_S, "warm-up minimum seconds [0.2]")]
MinItersOpt = Annotated[Optional[int], bounded(
    1, 10**9, "timed loop minimum iterations [50] (not given: at least 100 when the budget is on the p99, "
              "the default, so the p99 gets an interval)")]
MinSOpt = Annotated[Optional[float], bounded(0, DAY_S, "timed loop minimum seconds [0.3]")]
LoopMaxSOpt = Annotated[Optional[float], bounded(
    0.001, DAY_S, "cap on one warm-up and one timed loop, seconds each [30]")]
TimeoutOpt = Annotated[float, bounded(1, 7 * DAY_S, "timeout of one runner process, seconds")]
PowerOpt = Annotated[Optional[bool], typer.Option(
    "--power/--no-power",
    help="measure power on devices that have a meter, and on local from its own RAPL/NVML counters [on]")]
MeterFromInventoryOpt = Annotated[bool, typer.Option(
    "--meter-from-inventory", help="use each device's inventory meter (the default when set)")]
MeterOpt = Annotated[Optional[str], typer.Option(
    help="meter for the (single) selected device, e.g. um25c; overrides the inventory")]
MeterPortOpt = Annotated[Optional[str], typer.Option(help="serial port of --meter")]
IdleSettleOpt = Annotated[float, bounded(0, 3600, "settle before idle, seconds")]
IdleWindowOpt = Annotated[float, bounded(0.1, 3600, "idle window, seconds")]
IdleEveryOpt = Annotated[float, bounded(1, 7 * DAY_S, "re-measure idle after, seconds")]
PowerMinSamplesOpt = Annotated[int, bounded(
    2, 1_000_000, "meter samples the load window must hold (the timed loop is lengthened)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the cells as JSON instead of a table")]


#: ``host bench --help``: its options by panel (every parameter in exactly one)
BENCH_PANELS = {
    "Models": ("models",),
    "Devices": ("inventory", "device", "group", "all_devices", "coordinator", "place", "places",
                "power_cycles"),
    "Matrix": ("backend", "precision", "compile_option", "batch", "shape", "threads", "option", "dataset",
               "calibrate", "calibration_data"),
    "Protocol": ("quick", "rigorous", "target_ci", "max_s", "min_processes", "max_processes", "sessions",
                 "order_seed", "reference", "auto_calibrate", "warmup_iters", "warmup_s", "min_iters",
                 "min_s", "loop_max_s", "timeout"),
    "Scenario": SCENARIO_PANEL,
    "Budgets (the table's verdict)": BUDGET_PARAMS,
    "Power, memory and profiles": ("power", "meter_from_inventory", "meter", "meter_port", "idle_settle_s",
                                   "idle_window_s", "idle_every_s", "power_min_samples", "memory",
                                   "profile", "counters"),
    "SSH": ("known_hosts", "accept_new_host_keys", "connect_timeout"),
    "Resume and locks": ("results", "campaign", "retry_failed", "break_lock", "wait_lock", "no_wait"),
    "Output": ("json_out", "wide", "columns"),
}


# long: one typer parameter per option; the body is a handful of calls
@in_panels(BENCH_PANELS)
def bench(
    models: ModelsArg = None,
    inventory: InventoryOpt = None,
    device: DeviceOpt = None,
    group: GroupOpt = None,
    all_devices: AllOpt = False,
    coordinator: CoordinatorOpt = None,
    place: PlaceOpt = None,
    places: PlacesOpt = None,
    power_cycles: PowerCyclesOpt = 1,
    backend: BackendOpt = None,
    precision: PrecisionOpt = "fp32",
    compile_option: CompileOptionOpt = None,
    batch: BatchOpt = "1",
    shape: ShapeOpt = None,
    threads: ThreadsOpt = None,
    option: OptionOpt = None,
    dataset: DatasetOpt = None,
    calibrate: CalibrateOpt = Calibration.minmax,
    calibration_data: CalibrationDataOpt = None,
    quick: QuickOpt = False,
    rigorous: RigorousOpt = False,
    target_ci: TargetCiOpt = None,
    max_s: MaxCellSOpt = None,
    min_processes: MinProcessesOpt = None,
    max_processes: MaxProcessesOpt = None,
    sessions: SessionsOpt = None,
    order_seed: OrderSeedOpt = 0,
    reference: ReferenceOpt = True,
    auto_calibrate: AutoCalibrateOpt = True,
    warmup_iters: WarmupItersOpt = None,
    warmup_s: WarmupSOpt = None,
    min_iters: MinItersOpt = None,
    min_s: MinSOpt = None,
    loop_max_s: LoopMaxSOpt = None,
    scenario: ScenarioOpt = "single-stream",
    rate_hz: RateHzOpt = 60.0,
    duration: DurationOpt = 60.0,
    samples_per_query: SamplesPerQueryOpt = 8,
    streams: StreamsOpt = 1,
    qps: QpsOpt = 10.0,
    latency_bound_ms: LatencyBoundOpt = 100.0,
    search_runs: SearchRunsOpt = 0,
    fps: FpsOpt = None,
    timeout: TimeoutOpt = 600.0,
    power: PowerOpt = None,
    meter_from_inventory: MeterFromInventoryOpt = False,
    meter: MeterOpt = None,
    meter_port: MeterPortOpt = None,
    idle_settle_s: IdleSettleOpt = 5.0,
    idle_window_s: IdleWindowOpt = 10.0,
    idle_every_s: IdleEveryOpt = 1800.0,
    power_min_samples: PowerMinSamplesOpt = 10,
    memory: MemoryOpt = Memory.rss,
    profile: ProfileOpt = False,
    counters: CountersOpt = False,
    known_hosts: KnownHostsOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    results: ResultsOpt = Path("results"),
    campaign: CampaignOpt = None,
    retry_failed: RetryFailedOpt = False,
    break_lock: BreakLockOpt = False,
    wait_lock: WaitLockOpt = 600.0,
    no_wait: NoWaitOpt = False,
    json_out: JsonOpt = False,
    latency_ms: LatencyMsOpt = None,
    statistic: StatisticOpt = Statistic.p99,
    memory_mib: MemoryMibOpt = None,
    memory_scope: MemoryScopeOpt = Scope.process,
    power_w: PowerWOpt = None,
    energy_mj: EnergyMjOpt = None,
    accuracy_min: AccuracyMinOpt = None,
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
):
    """Benchmark models on this machine (--device local, the default) or on lab boards over
    SSH (--inventory lab --device X / --group G / --all), each cell in a fresh runner process.

    Boards run in parallel; cells on one board one after another. One JSON per cell under
    RESULTS/CAMPAIGN/DEVICE/. Re-running with --campaign NAME resumes: finished cells are
    skipped, cells whose board was unreachable run again, --retry-failed re-runs failed ones.
    Each board is locked while a campaign uses it: a second run waits for it (--wait-lock
    SECONDS, a countdown with the holder named; --no-wait fails at once; --break-lock takes it
    over); an interrupted or failed run ends with the command that resumes it. Runners left
    behind by an earlier run (host killed, link lost) are killed before each runner starts.

    Protocol: each cell is measured by fresh runner processes (--sessions fresh sessions
    each, one short timed loop per session), interleaved round by round with the board's
    other cells, until the 95 % CI of its p50 is within ±--target-ci or --max-s is spent.
    VALID when the CI met the target and no loop check (drift, second mode, throttle)
    failed; each INVALID reason says what to do. Presets: --quick, --rigorous.

    Scenarios (--scenario): single-stream is the protocol above; paced issues one query every
    1/--rate-hz s for --duration s in one process (deadline misses, miss % in the table),
    multi-stream --samples-per-query samples per query on the same schedule; offline --streams K
    back to back (samples/s); server Poisson arrivals at --qps (p99 against --latency-bound-ms).
    """
    from host.campaign.options import CampaignOptions
    from host.campaign.plan import discover_models
    from host.campaign.store import default_campaign_name

    fps = frame_budget(fps, scenario, rate_hz, latency_bound_ms)
    try:
        protocol, policy = _protocol_policy(
            quick, rigorous,
            protocol={"target_ci": target_ci, "max_cell_s": max_s, "min_processes": min_processes,
                      "max_processes": max_processes, "order_seed": order_seed},
            policy={"sessions": sessions, "warmup_min_iterations": warmup_iters, "warmup_min_s": warmup_s,
                    "min_iterations": min_iters, "min_duration_s": min_s, "max_duration_s": loop_max_s,
                    "fps": fps})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    policy = _enough_for_p99(policy, statistic, min_iters)
    protocol, policy, timeout = apply_scenario(
        scenario, rate_hz, duration, samples_per_query, protocol, policy, timeout,
        load={"streams": streams, "qps": qps, "latency_bound_ms": latency_bound_ms,
              "search_runs": search_runs})
    memory, calibrate = Memory(memory).value, Calibration(calibrate).value  # plain str in the results
    view = table_view(budgets_of(fps, latency_ms, statistic, memory_mib, memory_scope, power_w, energy_mj,
                                 accuracy_min), wide, columns)
    precisions, axis = _precisions(precision, calibrate, calibration_data), compile_axis(compile_option,
                                                                                           backend)
    batches = _batches(batch)
    if dataset is not None:
        from host.models.datasets import prepare_dataset

        try:  # a bad folder fails here, before any board is touched
            prepare_dataset(dataset)
        except HostError as exc:
            _fail(exc)
            return
    wants, held = wants_of(coordinator, place, places, bool(device or group or all_devices)), ExitStack()
    wait_lock, infos = 0.0 if no_wait else wait_lock, {}
    try:  # --coordinator's places are held from here to the finally below
        found_devices = _bench_devices(inventory, device, group, all_devices, backend, placed=wants and (
            lambda: held.enter_context(held_devices(coordinator, wants, inventory, wait_lock, infos))))
        config = _bench_config(found_devices, backend, batch=batches[0], shapes=parse_shapes(shape),
                               counters=counters,
                               options=_given_options(threads, option), policy=policy,
                               timeout=timeout)
        found = discover_models(models or _default_models())
        name = campaign or default_campaign_name()
        ssh = board_options(known_hosts, accept_new_host_keys, connect_timeout)
        if meter and len(found_devices) > 1:
            raise HostError("--meter names the meter of one device; several are selected",
                            hint="set meter= and meter_port= per device in the inventory")
        power_factory = None if power is False else bench_power_factory(
            meter, meter_port, ssh, settle_s=idle_settle_s, window_s=idle_window_s,
            idle_every_s=idle_every_s, min_samples=power_min_samples)
        with interruptible() as received:
            try:
                result = run_bench(found, found_devices, CampaignOptions(
                    config=config, results=results, campaign=name, backend=backend, retry_failed=retry_failed,
                    protocol=protocol, memory=memory, break_lock=break_lock, dataset=dataset,
                    wait_lock=wait_lock, compile_axis=axis,
                    precisions=precisions, batches=batches, profile=profile, reference=reference,
                    auto_calibrate=auto_calibrate),
                    ssh=ssh, power=power_factory, cycler=bench_cycler(coordinator, infos, power_cycles))
            except CampaignInterrupted as exc:
                exc.exit_code = received.exit_code(exc.exit_code)  # 143 SIGTERM, 129 SIGHUP
                exc.hint = f"resume with: {resume_command(name)}"
                raise
            except DiskFullError as exc:
                exc.hint = f"{exc.hint}: {resume_command(name)}" if exc.hint else resume_command(name)
                raise
    except HostError as exc:
        _fail(exc)
        return
    finally:
        held.close()
    _render_bench(result, found_devices, name, json_out, view)
    _exit_for(result.cells, name, retry_failed)


def _batches(text: str) -> tuple:
    """Step 0 of bench: ``--batch 1`` or a sweep ``1,8,32`` as a tuple of ints in 1..MAX_BATCH
    (typer.BadParameter otherwise)."""
    try:
        values = tuple(dict.fromkeys(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        values = ()
    if not values or min(values) < 1 or max(values) > MAX_BATCH:
        raise typer.BadParameter(f"{text!r}: batch sizes from 1 to {MAX_BATCH}, comma-separated (1,8,32)",
                                 param_hint="--batch")
    return values


def _precisions(text: str, calibrate: str, calibration_data: Optional[Path]) -> tuple:
    """Step 0 of bench: ``--precision`` as ``"fp32"`` and :class:`host.models.precision.Recipe`
    objects (typer.BadParameter for an unknown name or calibration method)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("name at least one precision", param_hint="--precision")
    if set(names) == {"fp32"}:
        return ("fp32",)
    from host.models.precision import Recipe

    data = str(calibration_data) if calibration_data else None
    known = {"fp32": "fp32", "fp16": Recipe("fp16"),
             "int8": Recipe("int8", calibration=calibrate, calibration_data=data),
             "int8-dynamic": Recipe("int8", method="dynamic")}
    out = []
    for name in dict.fromkeys(names):
        if name not in known:
            raise typer.BadParameter(f"{name!r}: one of {', '.join(known)}", param_hint="--precision")
        out.append(known[name])
    return tuple(out)


def _protocol_policy(quick: bool, rigorous: bool, *, protocol: dict, policy: dict):
    """Step 0 of bench: the preset (default, --quick or --rigorous) with the options given
    explicitly on top. Raises ValueError for both presets or a contradictory result."""
    from host.campaign.protocol import PRESETS

    if quick and rigorous:
        raise ValueError("--quick and --rigorous exclude each other")
    base_protocol, base_policy = PRESETS["quick" if quick else "rigorous" if rigorous else "default"]
    chosen = dataclasses.replace(base_protocol, **{k: v for k, v in protocol.items() if v is not None})
    loop = dataclasses.replace(base_policy, **{k: v for k, v in policy.items() if v is not None})
    chosen.check()
    loop.check()
    return chosen, loop


def _enough_for_p99(policy, statistic, min_iters):
    """A p99 budget (the default) needs the p99's interval: each session runs at least
    :data:`~host.campaign.cells.P99_MIN_ITERATIONS` iterations unless --min-iters was given
    (a slow model otherwise stopped at the preset's 50 and its p99 had no interval)."""
    from host.campaign.cells import P99_MIN_ITERATIONS

    if min_iters is not None or str(getattr(statistic, "value", statistic)) != "p99":
        return policy
    return dataclasses.replace(policy, min_iterations=max(policy.min_iterations, P99_MIN_ITERATIONS))


def _given_options(threads: Optional[int], option: Optional[List[str]]) -> dict:
    """Step 1 of bench: the runtime options set on the command line, ``{name: text or value}``
    (``--threads`` and each ``-o/--option NAME=VALUE``); typer.BadParameter for a ``--option``
    without ``=``."""
    given = {"threads": threads} if threads is not None else {}
    for text in option or []:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{text!r}: expected NAME=VALUE", param_hint="--option")
        given[key.strip().replace("-", "_")] = value.strip()
    return given


def _bench_devices(inventory, device, group, all_devices: bool, backend: Optional[str], placed=None) -> list:
    """Step 2 of bench: refuse a ``--backend`` this version cannot run, then select the
    devices: ``placed()`` (the boards of --coordinator's places) when given, else the inventory's
    (``--device local`` when none is named). Raises BackendError, InventoryError,
    UnknownDeviceError, SelectionError, and what ``placed`` raises."""
    from host.lab.benchconfig import check_backend

    if backend is not None:
        check_backend(backend)
    if placed:
        return placed()
    if not (device or group or all_devices):
        device = ["local"]
    _, found_devices = select(inventory, device, group, all_devices)
    return found_devices


def _bench_config(found_devices, backend: Optional[str], *, batch: int, shapes: tuple, options: dict,
                  policy, timeout: float, counters: bool = False):
    """Step 3 of bench: the configuration. Refuses devices whose backend is not implemented
    (e.g. runtime=tensorrt), and backend options that none of the chosen backends declares
    (``--backend``, else each device's runtime). Raises HostError, BackendError."""
    from host.campaign.plan import unsupported_backends
    from host.lab.benchconfig import BenchConfig, check_backend_options
    from runners.backends import default_name

    config = BenchConfig(backend=backend or default_name(), batch=batch, shapes=shapes, timeout_s=timeout,
                         counters=counters, policy=policy)
    missing = unsupported_backends(found_devices, config, backend)
    if missing:
        raise HostError(
            "not implemented: no runner backend for " + ", ".join(missing)
            + f" in this version (runners has: {', '.join(implemented_names())})",
            hint="bench these boards with --backend null, or leave them out")
    chosen = [backend] if backend else sorted({d.runtime for d in found_devices})
    values = _in_range(check_backend_options(options, chosen))
    threads = values.pop("threads", 0)
    return dataclasses.replace(config, threads=threads, options=tuple(values.items()))


def _in_range(values: dict) -> dict:
    """Step 3 of bench: ``values`` (typed backend options), each number finite and ``threads``
    within 0..MAX_THREADS however it was given (``--threads`` or ``--option threads=N``);
    typer.BadParameter otherwise."""
    for name, value in values.items():
        low, high = (0, MAX_THREADS) if name == "threads" else (-math.inf, math.inf)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                not (math.isfinite(value) and low <= value <= high):
            span = f"from {low} to {high}" if name == "threads" else "a finite number"
            raise typer.BadParameter(f"{name}={value!r}: expected {span}", param_hint=f"--option {name}")
    return values


def resume_command(campaign: str) -> str:
    """The command that resumes this run: this ``host bench`` command line as typed, with
    ``--campaign NAME`` added when it was not given (shell-quoted)."""
    import shlex
    import sys

    argv = list(sys.argv[1:])
    if "bench" in argv:
        argv = argv[argv.index("bench") + 1:]
    else:  # not started from the command line (a test's CliRunner): the options are unknown
        argv = ["..."]
    if not any(a == "--campaign" or a.startswith("--campaign=") for a in argv):
        argv += ["--campaign", campaign]
    return shlex.join(["host", "bench", *argv])


def _resume_lines(cells: list, name: str, retry_failed: bool) -> list:
    """What to run after a run with failed cells: the resume command (cells whose board never
    ran the model run again), and ``--retry-failed`` when others failed on the board."""
    from host.campaign.document import NOT_RUN

    failed = [c for c in cells if c.get("status") == "failed"]
    if not failed:
        return []
    lines = [f"resume: {resume_command(name)}"]
    on_board = [c for c in failed if (c.get("error") or {}).get("category") not in NOT_RUN]
    if on_board and not retry_failed:
        lines.append(f"  (add --retry-failed to run the {len(on_board)} cells that failed on the board "
                     "again)")
    return lines


def _render_bench(result, found_devices, name: str, json_out: bool, view) -> None:
    """Step 5 of bench: the cells as a table (plus per-board lines) or JSON."""
    from host.analysis.compare import indistinguishable
    from host.cli.render import console, human_bytes, print_json, styled

    cells = result.cells
    if json_out:
        print_json(cells)
    else:
        out = console()
        several = len(found_devices) > 1
        view.print(out, cells, f"campaign {name} · {', '.join(d.name for d in found_devices)}",
                   show_device=several, ties=indistinguishable(cells))
        for s in result.boards.values():
            line = (f"{s.device}: {s.run} run, {s.skipped} kept; sent {s.models_sent} models "
                    f"({human_bytes(s.model_bytes_sent)}), {human_bytes(s.bytes_sent)} in all")
            out.print(styled(line, (f"; {s.error}" if s.error else "", "red")), highlight=False)
            for note in s.notes:
                out.print(f"{s.device}: {note}", highlight=False)
        statuses = [c.get("status") for c in cells]
        bad = statuses.count("failed") + statuses.count("invalid")
        if bad:
            out.print(f"{statuses.count('failed')} failed and {statuses.count('invalid')} INVALID "
                      f"of {len(cells)} cells: reasons above and in each cell's JSON "
                      "(error, verdict.reasons)", highlight=False)
        folder = result.folder
        out.print(f"results: {folder}   next: host report {folder}", highlight=False)


def _exit_for(cells: list, name: str, retry_failed: bool) -> None:
    """Step 6 of bench: a run with failed cells ends with the command that resumes it (stderr) and
    exits 1; one where none failed but one is INVALID exits 3."""
    from host.cli.render import console

    statuses = [c.get("status") for c in cells]
    for line in _resume_lines(cells, name, retry_failed):
        console(stderr=True).print(line, highlight=False, soft_wrap=True, markup=False)
    if "failed" in statuses:
        raise typer.Exit(1)
    if "invalid" in statuses:
        raise typer.Exit(3)
