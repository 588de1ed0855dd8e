"""A labgrid place as one of our devices (:mod:`host.lab.coordinator`): the inventory board that
answers at the place's SSH address, else a device made from that address and the place's tags.

Matching is literal: an inventory host matches a place when its ``ansible_host`` equals the
NetworkService ``address`` (case-insensitive, no DNS lookup) and its ``ansible_port`` the
service's ``port``. A matched board keeps everything the inventory says of it (name, family,
runtime, key, known_hosts, work folder); the place only confirms where it answers (a
NetworkService ``username`` replaces the inventory's user). An unmatched place becomes a device
named after the place, with the inventory defaults (:data:`host.lab.devices.DEFAULTS`), the
``family`` and ``runtime`` tags when they name a known family and runtime, and SSH keys and
known_hosts as ssh finds them (``--known-hosts``).
"""

from __future__ import annotations

import dataclasses

from host.lab.coordinator import PlaceInfo
from host.lab.devices import DEFAULTS, Device


def matching_device(place: PlaceInfo, devices) -> Device | None:
    """The first of ``devices`` whose host and port are the place's SSH address; None when
    none is, or the place has no address."""
    if place.ssh is None:
        return None
    for device in devices:
        if device.connection != "local" and device.host.lower() == place.ssh.host.lower() \
                and int(device.port) == place.ssh.port:
            return device
    return None


def device_for(place: PlaceInfo, devices) -> Device:
    """The device a campaign runs on for an acquired ``place`` (see the module docstring).
    The place must have an SSH address (a :class:`~host.lab.coordinator.PlaceLease` checks)."""
    assert place.ssh is not None, place
    found = matching_device(place, devices)
    if found is not None:
        return dataclasses.replace(found, user=place.ssh.user or found.user)
    from host.lab.inventory import runtimes
    from runners import families

    family = place.tags.get("family")
    runtime = place.tags.get("runtime")
    return Device(
        name=place.name, family=family if family in families.names() else None, groups=(),
        host=place.ssh.host, port=place.ssh.port, user=place.ssh.user, connection="ssh",
        runtime=runtime if runtime in runtimes() else DEFAULTS["runtime"], mode="native", image=None,
        image_archive=None, engine=DEFAULTS["engine"], container_args="", workdir=DEFAULTS["workdir"],
        python=DEFAULTS["python"], key_file=None, known_hosts=None, vars={},
        source=f"labgrid place {place.name}")
