"""The device's campaign effect: how much a whole device speeds up or slows down between
campaigns, learned once per device from every cell measured on it (docs/measurement.md §5,
"The campaign level").

Model, on the log of a cell's p50 (relative effects)::

    y[i, j] = mu_i + c_j + g_ij + w_ij

cell ``i`` (device, model sha256, configuration), campaign ``j``; ``c_j`` ~ (0, σ_c²) is the
campaign effect every cell of the device shares in campaign ``j`` (the VM or board as a whole
faster or slower), ``g_ij`` ~ (0, σ_g²) the cell's own between-campaign deviation (the
cell × campaign interaction) and ``w_ij`` the within-campaign error, whose variance each cell
states with its within-campaign interval. A reference workload run in every campaign
(``campaign.json`` ``reference``) is one more cell.

Estimator (method of moments for a two-way random-effects model without replication,
unbalanced: Searle, Casella & McCulloch, *Variance Components*, Wiley 1992, §4.7 and ch. 5,
Henderson's method 3): fit the cell and campaign effects by least squares; the residual mean
square estimates σ_g² + mean within-campaign variance (``mse``); the campaign effects' spread,
``c'Pc = Σ (ĉ_j − mean ĉ)²``, has expectation ``(K − 1) σ_c² + mse · tr(P V P)`` (``V`` the
campaign effects' covariance per unit error variance, ``P`` the centring), so
``σ_c² = max(0, (c'Pc − mse · tr(PVP)) / (K − 1))`` and ``σ_g² = max(0, mse − mean within
variance)``. For a balanced design this is the textbook ``(MS_campaign − MS_error) / cells``. With
one cell (no residual) ``mse`` is the mean within-campaign variance: the estimator is then
:func:`host.campaign.cells.campaign_level`'s per-cell one.

A cell measured for the first time on the device varies between campaigns by σ_c² + σ_g²: that
is the device's ``sd_log``. Its degrees of freedom are the fewest of its parts', K − 1 (σ_c² is
learned from K campaign effects, whatever the number of cells); the interval uses the Student-t
quantile with them, so a spread learned from few campaigns widens the interval instead of
under-covering.
"""

from __future__ import annotations

import math

import numpy as np

from runners import stats

#: A campaign effect needs at least this many campaigns of the device (one campaign has no spread).
MIN_CAMPAIGNS = 2
REFERENCE_CELL = "(reference workload)"
#: A p50 outside this range (ms: 1 ns to 1 day) is not a latency but a hand-edited or broken file:
#: passed over, so no spread can overflow.
PLAUSIBLE_MS = (1e-6, 86_400_000.0)
#: A device whose own between-campaign spread has fewer than this many degrees of freedom has it
#: pooled with :data:`PRIOR_SD_LOG` (see :func:`with_prior`).
PRIOR_UNTIL_DF = 4
#: The assumed between-campaign spread of a device with little history (sd of ln p50, shared by its
#: cells) and its weight in degrees of freedom. Origin: on the 2-core CI VM, the median over the 7
#: example models of the sd of ln p50 over 9 consecutive main-job runs was 0.034 (one results
#: folder) and 0.057 (a fresh folder each run), bench/README.md, issue 27, at 3231a99. For a
#: physical board it is likely high: the prior errs wide, and the device's own history replaces it.
PRIOR_SD_LOG, PRIOR_DF = 0.05, 2
DEVICE_LEVEL_METHOD = (
    "two-way random-effects model of ln p50 (cell + campaign effect shared by the device's cells + residual) "
    "over the device's other campaigns, method of moments (Henderson's method 3); sd_log = sqrt(shared + "
    "cell's own between-campaign variance); K - 1 degrees of freedom")


def plausible(p50) -> bool:
    """Whether ``p50`` is a number of ms a latency can be (:data:`PLAUSIBLE_MS`)."""
    if not isinstance(p50, (int, float)) or isinstance(p50, bool):
        return False
    return PLAUSIBLE_MS[0] <= p50 <= PLAUSIBLE_MS[1]


def log_var(interval) -> float | None:
    """The variance on the log scale implied by a 95 % interval [lo, hi] (normal approximation);
    None without a usable interval."""
    if not interval or interval[0] is None or interval[1] is None or interval[0] <= 0:
        return None
    return ((math.log(interval[1]) - math.log(interval[0])) / (2 * stats.Z975)) ** 2


def reference_observations(references: dict | None) -> list:
    """Observations (:func:`device_level`'s ``history`` items) of the reference workload from
    ``{campaign: [{"latency_ms_p50": x, "latency_ms_p50_ci95": [lo, hi] (optional)}, ...]}`` (a
    campaign's reference records for this device, e.g. one per round): the campaign's value is the
    geometric mean of its records' p50s; its within-campaign variance is the variance of that mean
    (records' spread / n) when there are several, else the record's own interval's. Records
    without a positive p50 are skipped; an empty or missing mapping gives no observations."""
    out = []
    for campaign, records in (references or {}).items():
        good = [(r.get("latency_ms_p50"), r) for r in records or [] if isinstance(r, dict)]
        good = [(p, r) for p, r in good if plausible(p)]
        if not good:
            continue
        y = np.log([p for p, _ in good])
        own = log_var(good[0][1].get("latency_ms_p50_ci95"))
        var = float(np.var(y, ddof=1)) / len(y) if len(y) > 1 else own
        half = stats.Z975 * math.sqrt(var or 0.0)
        mid = math.exp(float(y.mean()))
        out.append({"campaign": campaign, "cell": REFERENCE_CELL, "p50_ms": mid,
                    "ci95": [mid * math.exp(-half), mid * math.exp(half)]})
    return out


def usual_reference(refs: list) -> dict:
    """The device's usual speed on the reference workload: ``{"reference_usual_ms",
    "reference_usual_campaigns"}``, the median over campaigns of each campaign's reference p50
    (``refs``: :func:`reference_observations`), or None with fewer than :data:`MIN_CAMPAIGNS`
    campaigns. The median, not the mean: a campaign run while the machine was in an odd state
    (a VM-wide step) does not move it."""
    p50s = [o["p50_ms"] for o in refs if plausible(o.get("p50_ms"))]
    usual = math.exp(float(np.median(np.log(p50s)))) if len(p50s) >= MIN_CAMPAIGNS else None
    return {"reference_usual_ms": usual, "reference_usual_campaigns": len(p50s)}


def _connected(obs: list) -> list:
    """The observations of the largest set of campaigns linked by shared cells (campaign effects
    are comparable only there), keeping cells seen in >= 2 of its campaigns."""
    parent: dict = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    by_cell: dict = {}
    for o in obs:
        by_cell.setdefault(o["cell"], []).append(o["campaign"])
    for camps in by_cell.values():
        for other in camps[1:]:
            parent[root(other)] = root(camps[0])
    groups: dict = {}
    for o in obs:
        groups.setdefault(root(o["campaign"]), []).append(o)
    best = max(groups.values(), key=lambda g: (len({o["campaign"] for o in g}), len(g)), default=[])
    counts: dict = {}
    for o in best:
        counts[o["cell"]] = counts.get(o["cell"], 0) + 1
    return [o for o in best if counts[o["cell"]] >= 2]


def _fit(obs: list) -> dict:
    """Least-squares cell and campaign effects of ln p50: ``cpc`` (spread of the campaign
    effects), ``trace`` (tr(PVP)), ``rss`` and its degrees of freedom."""
    cells = sorted({o["cell"] for o in obs})
    camps = sorted({o["campaign"] for o in obs})
    n, k = len(cells), len(camps)
    x = np.zeros((len(obs), n + k - 1))
    for row, o in enumerate(obs):
        x[row, cells.index(o["cell"])] = 1.0
        j = camps.index(o["campaign"])
        if j:
            x[row, n + j - 1] = 1.0
    y = np.log([o["p50_ms"] for o in obs])
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    c = np.concatenate([[0.0], beta[n:]])
    v = np.zeros((k, k))
    v[1:, 1:] = xtx_inv[n:, n:]
    p = np.eye(k) - 1.0 / k
    resid = y - x @ beta
    per_cell = {}
    for o, r in zip(obs, resid):
        ss, count = per_cell.get(o["cell"], (0.0, 0))
        per_cell[o["cell"]] = (ss + float(r) ** 2, count + 1)
    return {"cells": n, "campaigns": k, "cpc": float(c @ p @ c), "trace": float(np.trace(p @ v @ p)),
            "rss": float(resid @ resid), "df": len(obs) - n - k + 1, "per_cell": per_cell}


def _trigamma_inverse(value: float) -> float:
    """x with trigamma(x) = ``value`` (> 0): trigamma falls from +inf to 0 over (0, inf)."""
    from scipy.optimize import brentq
    from scipy.special import polygamma

    return float(brentq(lambda x: float(polygamma(1, x)) - value, 1e-8, 1e8, xtol=1e-12))


def cell_prior(per_cell: dict, df_total: int, n_obs: int) -> tuple:
    """``(s0², d0)``: the distribution the cells' own residual variances are drawn from, a scaled
    inverse chi-square with ``d0`` degrees of freedom around ``s0²`` — Smyth 2004, §6.2 (limma's
    ``fitFDist``): with ``e_i = ln s_i² − ψ(d_i/2) + ln(d_i/2)``, ``ψ'(d0/2) = var(e) − mean ψ'(d_i/2)``
    and ``s0² = exp(mean e + ψ(d0/2) − ln(d0/2))``. ``per_cell``: ``{cell: (sum of squared residuals of
    the two-way fit, observations)}``; each cell's degrees of freedom are its share of the fit's
    (``df_total``, over ``n_obs`` observations less one per cell). Cells alike give ``d0`` large (the
    device's spread is a good prior for each); one cell that moves far more than the others gives
    ``d0`` small, so a cell's own history outweighs it. Returns ``(None, None)`` with fewer than 3 cells
    that have a positive variance, or when the cells vary no more than their sampling error says
    (d0 infinite: then the device's spread is used as it is)."""
    from scipy.special import digamma, polygamma

    free = n_obs - len(per_cell)
    rows = [(ss / (n - 1), (n - 1) * df_total / free) for ss, n in per_cell.values() if n >= 2 and ss > 0]
    if len(rows) < 3 or free <= 0 or df_total <= 0:
        return None, None
    s2, d = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    e = np.log(s2) - digamma(d / 2) + np.log(d / 2)
    excess = float(np.var(e, ddof=1) - np.mean(polygamma(1, d / 2)))
    if excess <= 0:
        return None, None
    d0 = 2 * _trigamma_inverse(excess)
    return float(np.exp(np.mean(e) + digamma(d0 / 2) - np.log(d0 / 2))), d0


def device_level(history: list, references: dict | None = None) -> dict:
    """The device's between-campaign spread from ``history``, observations
    ``[{"campaign", "cell", "p50_ms", "ci95"}]`` of this device's cells in its other campaigns
    (``ci95`` the cell's within-campaign interval; :func:`host.campaign.store.device_history`), plus
    the reference workload's per-campaign records ``references`` (:func:`reference_observations`;
    absent: nothing changes). Returns ``{"campaigns", "cells", "reference_campaigns",
    "shared_sd_log", "cell_sd_log", "sd_log", "shared_df", "df", "cell_prior_sd_log",
    "cell_prior_df", "reference_usual_ms", "reference_usual_campaigns", "method"}``
    (:func:`usual_reference`): the shared campaign effect's sd, the cells' own (interaction) sd, the
    spread a cell new to the device has between campaigns (sqrt of their sum) and degrees of freedom
    (K − 1 for both); the prior a cell's own history is pooled with when the cells differ
    (:func:`cell_prior`, its sd net of the within-campaign variance, None when they do not); the
    spreads are None with fewer than :data:`MIN_CAMPAIGNS` linked campaigns. Never raises on odd
    data (p50s that are not :func:`plausible` are skipped)."""
    refs = reference_observations(references)
    obs = _connected([o for o in list(history) + refs if plausible(o.get("p50_ms"))])
    out = {"campaigns": len({o["campaign"] for o in obs}), "cells": len({o["cell"] for o in obs}),
           "reference_campaigns": len({o["campaign"] for o in obs if o["cell"] == REFERENCE_CELL}),
           "shared_sd_log": None, "cell_sd_log": None, "sd_log": None, "shared_df": None, "df": None,
           "cell_prior_sd_log": None, "cell_prior_df": None, **usual_reference(refs),
           "method": DEVICE_LEVEL_METHOD}
    if out["campaigns"] < MIN_CAMPAIGNS:
        return out
    fit = _fit(obs)
    within = float(np.mean([log_var(o["ci95"]) or 0.0 for o in obs]))
    mse = fit["rss"] / fit["df"] if fit["df"] > 0 else within
    shared = max((fit["cpc"] - mse * fit["trace"]) / (fit["campaigns"] - 1), 0.0)
    own = max(mse - within, 0.0) if fit["df"] > 0 else 0.0
    out.update(shared_sd_log=math.sqrt(shared), cell_sd_log=math.sqrt(own), sd_log=math.sqrt(shared + own),
               shared_df=fit["campaigns"] - 1, df=fit["campaigns"] - 1)
    s0, d0 = cell_prior(fit["per_cell"], fit["df"], len(obs))
    if s0 is not None:
        out.update(cell_prior_sd_log=math.sqrt(max(s0 - within, 0.0)), cell_prior_df=d0)
    return out


def with_prior(level: dict) -> dict:
    """``level`` (:func:`device_level`) with its shared campaign variance pooled with the assumed
    :data:`PRIOR_SD_LOG` at :data:`PRIOR_DF` degrees of freedom while the device's own spread has
    fewer than :data:`PRIOR_UNTIL_DF` (Smyth 2004, eq. 3: ``(d0 s0² + d s²) / (d0 + d)`` at
    ``d0 + d`` degrees of freedom). Why: a device's first campaigns are its brief calibration's
    back-to-back groups (:func:`host.campaign.reference.brief_calibration`), which see only its
    short-term moves; on this VM they learned a spread near 0 and the machine then moved 15 %
    between its second and third campaigns. From :data:`PRIOR_UNTIL_DF` degrees of freedom on the
    device's own spread is used as measured. The measured figures stay as ``measured_sd_log``,
    ``measured_shared_sd_log`` and ``measured_df``; ``prior`` names the assumption (None when not
    used). A level without a spread (fewer than :data:`MIN_CAMPAIGNS` campaigns) is returned as is."""
    df = level.get("df")
    out = dict(level, prior=None)
    if level.get("sd_log") is None or df is None or df >= PRIOR_UNTIL_DF:
        return out
    shared = (PRIOR_DF * PRIOR_SD_LOG ** 2 + df * level["shared_sd_log"] ** 2) / (PRIOR_DF + df)
    out.update(measured_sd_log=level["sd_log"], measured_shared_sd_log=level["shared_sd_log"], measured_df=df,
               shared_sd_log=math.sqrt(shared), sd_log=math.sqrt(shared + (level["cell_sd_log"] or 0.0) ** 2),
               shared_df=df + PRIOR_DF, df=df + PRIOR_DF,
               prior={"sd_log": PRIOR_SD_LOG, "df": PRIOR_DF, "until_df": PRIOR_UNTIL_DF})
    return out


def device_level_in(results, campaign: str, device: str) -> dict:
    """:func:`device_level` of ``device`` from every other campaign under ``results`` (its cells
    and the reference records in each ``campaign.json``) and from the device's history on this
    host (:mod:`host.campaign.device_store`: the reference records of campaigns in other results
    folders and of ``host calibrate``, and the cells of campaigns in other results folders), with
    the prior of a device with little history (:func:`with_prior`). Campaigns are keyed
    ``<folder> @ <results root>``, so one campaign seen in both places counts once. Unreadable
    files are passed over."""
    from host.campaign import device_store
    from host.campaign.store import device_history, reference_history, safe_name

    def key(name: str) -> str:
        return name if name.startswith("calibrate ") else device_store.campaign_key(results, name)

    history = [dict(o, campaign=key(o["campaign"])) for o in device_history(results, campaign, device)]
    here = {o["campaign"] for o in history}
    now = key(safe_name(campaign))
    history += [dict(o, campaign=k) for k, obs in device_store.cell_campaigns(device, exclude=now).items()
                if k not in here for o in obs]
    refs = {key(k): v for k, v in reference_history(results, campaign, device).items()}
    lab = device_store.reference_campaigns(device, exclude=now)
    return with_prior(device_level(history, {**lab, **refs}))


def earlier_in(results, campaign: str, device: str, cell: tuple, stored: dict | None = None) -> list:
    """The same cell (``cell``: model stem, configuration slug, model sha256) in other campaigns:
    those under ``results`` (:func:`host.campaign.store.earlier_cells`) and those in the device's
    history on this host (:mod:`host.campaign.device_store`: campaigns in other results folders;
    ``stored``: its :func:`~host.campaign.device_store.cell_campaigns`, when the caller has read
    them once for all its cells), each campaign once, oldest first (``[{"campaign", "p50_ms",
    "ci95", "start_utc"}]``)."""
    from host.campaign import device_store
    from host.campaign.store import cell_key, earlier_cells, safe_name

    found = earlier_cells(results, campaign, device, *cell)
    here = {device_store.campaign_key(results, safe_name(e["campaign"])) for e in found}
    here.add(device_store.campaign_key(results, safe_name(campaign)))
    name = cell_key(*cell)
    stored = device_store.cell_campaigns(device) if stored is None else stored
    found += [dict(o, campaign=k) for k, obs in stored.items()
              if k not in here for o in obs if o["cell"] == name]
    return sorted(found, key=lambda e: e.get("start_utc") or "")


def host_stability(device: str) -> dict | None:
    """The device's between-campaign spread from its history on this host alone
    (:mod:`host.campaign.device_store`: every campaign's and calibration's reference runs):
    ``{"varies_pct_95", "sd_log", "campaigns", "df", "source"}`` — ``varies_pct_95`` is
    ``100 * (exp(1.96 * sd_log) - 1)``, the ± a campaign's speed moves, 95 % of campaigns — or None
    with fewer than :data:`MIN_CAMPAIGNS` campaigns."""
    from host.campaign import device_store

    level = device_level([], device_store.reference_campaigns(device))
    if level["sd_log"] is None:
        return None
    return {"varies_pct_95": 100.0 * math.expm1(stats.Z975 * level["sd_log"]), "sd_log": level["sd_log"],
            "campaigns": level["campaigns"], "df": level["df"], "source": "device history on this host"}
