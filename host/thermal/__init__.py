"""Thermal and clocks during a run: the board's own sources, a 1 Hz timeline per cell, time to throttle.

* :mod:`host.thermal.sources` — what a board exposes (thermal zones, cpufreq, devfreq,
  ``vcgencmd get_throttled``, ``nvidia-smi`` clock event reasons), found with one probe command,
  and the one shell command a tick runs;
* :mod:`host.thermal.sampler` — the host-side thread that runs it every second, stamping each
  answer on the host clock, and the ``<cell>.thermal.csv`` timeline;
* :mod:`host.thermal.summary` — the figures over the runner's timed loop (aligned as power is,
  :mod:`host.power.align`) and the ``throttled`` warning;
* :mod:`host.thermal.session` — one board's sampling across a campaign, and the cell's ``thermal``
  block.

Method and sources: docs/power.md, "Thermal and clocks during a run".
"""
