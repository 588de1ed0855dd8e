"""Boards shared through a labgrid coordinator: list its places, reserve one (waiting in its
queue), acquire it, and release it on every way out.

A labgrid lab (labgrid 26: https://labgrid.readthedocs.io, "Remote Access") is a coordinator
(``labgrid-coordinator``, gRPC, port 20408 by default), exporters that publish resources (here: a
``NetworkService`` per board, its SSH address, user and port) and *places* that group resources
and carry tags (``family=jetson``). A client *reserves* a place by filter (``name=NAME``, or
tags); the coordinator's scheduler allocates waiting reservations by priority and age as places
come free; the client then *acquires* the allocated place (it shows as held by ``host/user``)
and *releases* it afterwards. A reservation left waiting expires unless polled (60 s); an
acquired one does not, and an acquired place stays acquired until released: labgrid never
releases on its own, so :class:`PlaceLease` releases on normal exit, on exceptions, on
KeyboardInterrupt and (SIGTERM/SIGHUP raising KeyboardInterrupt) on those signals.

Why labgrid's own Python client (``labgrid.remote.client.ClientSession``, the class its
``labgrid-client`` and its pytest plugin use) rather than ``labgrid-client`` subprocesses:
``labgrid-client`` prints for people (places and resources have no JSON form; ``-v`` is
``pprint`` output), so parsing it breaks on any change of wording, and its failures come back
as exit status 1 with an English sentence; the Python client gives ``Place`` and
``ResourceEntry`` objects and gRPC status codes (``INVALID_ARGUMENT``: no such place,
``FAILED_PRECONDITION``: already acquired, ``UNAVAILABLE``: no coordinator), which map onto
typed errors without guessing. Requests go straight to the coordinator's stub
(``CreateReservation``, ``PollReservation``, ``CancelReservation``, ``AcquirePlace``,
``ReleasePlace``, ``GetReservations``) with a timeout each; the version is pinned (``lab`` extra,
labgrid 26.0.1). Every call runs on the calling thread's asyncio loop (labgrid's
``ensure_event_loop``), between our own ``time.sleep`` waits, so a Ctrl-C lands in our code.

Errors raised (host/errors.py): CoordinatorUnreachableError, NoSuchPlaceError, PlaceBusyError,
CoordinatorError (anything else the coordinator refused).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from host.errors import CoordinatorError, CoordinatorUnreachableError, NoSuchPlaceError, PlaceBusyError

#: labgrid's coordinator port when an address names none.
DEFAULT_PORT = 20408
#: Seconds between two polls of a waiting reservation (labgrid-client waits 1 s too).
POLL_S = 1.0
#: Seconds one request (or the connection's start) may take.
REQUEST_TIMEOUT_S = 15.0
#: Tag keys and values labgrid accepts (``labgrid.remote.common.TAG_KEY``/``TAG_VAL``, applied to
#: the whole string here: the coordinator checks only the first character of a value).
TAG_KEY = r"[a-z][a-z0-9_]+"
TAG_VALUE = r"[a-z0-9_][A-Za-z0-9_.:+-]*"


@dataclass(frozen=True)
class SshAddress:
    """A place's ``NetworkService``: where its board answers SSH."""

    host: str
    port: int
    user: str | None

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


@dataclass
class PlaceInfo:
    """One place as the coordinator sees it: ``holder`` is labgrid's ``host/user`` of whoever
    acquired it (None: free); ``reservation`` the state of the reservation allocated to it
    (``allocated``/``acquired``, with its owner) or None; ``waiting`` how many waiting
    reservations it could serve; ``ssh`` its NetworkService address (None: it has none);
    ``resources`` the classes of the resources it matches (``NetworkService``, a power driver's
    resource ...)."""

    name: str
    tags: dict = field(default_factory=dict)
    holder: str | None = None
    reservation: str | None = None
    reservation_owner: str | None = None
    waiting: int = 0
    ssh: SshAddress | None = None
    resources: tuple = ()
    comment: str = ""

    def to_json(self) -> dict:
        doc = dataclasses.asdict(self)
        doc["ssh"] = str(self.ssh) if self.ssh else None
        doc["resources"] = list(self.resources)
        return doc


@dataclass
class WaitStatus:
    """What a waiting :class:`PlaceLease` reports once per poll: the filter (``name=b1``), the
    reservation token, seconds waited and allowed, and who holds the places it could get."""

    want: str
    token: str
    waited_s: float
    wait_s: float
    holders: tuple = ()


def want_text(want: dict) -> str:
    """``{"name": "b1"}`` -> ``name=b1``; tags sorted, comma-separated."""
    return ",".join(f"{k}={v}" for k, v in sorted(want.items()))


def parse_want(text: str) -> dict:
    """``TAG=VALUE[,TAG=VALUE...]`` (``--places``) as a filter dict.

    Raises:
        ValueError: not TAG=VALUE pairs, or a key or value labgrid would refuse.
    """
    import re

    want = {}
    for pair in (p.strip() for p in text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(TAG_KEY, key) or not re.fullmatch(TAG_VALUE, value):
            raise ValueError(f"{pair!r}: expected TAG=VALUE (tag: a-z, 0-9, _, two or more characters, "
                             "starting with a letter; value starting with a-z, 0-9 or _)")
        want[key] = value
    return want


def normalise_address(address: str) -> str:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT`` too) with labgrid's default port filled in."""
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return address
    return f"{address}:{DEFAULT_PORT}"


@contextlib.contextmanager
def _captured_log(found: list):
    """labgrid logs a lost coordinator with ``logging.error`` on the root logger, which would
    configure logging for the whole process (``basicConfig``): a handler of ours takes those
    lines (into ``found``) while a request runs, and is removed after."""

    class Keep(logging.Handler):
        def emit(self, record):
            found.append(record.getMessage())

    handler = Keep(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


class Coordinator:
    """One client session with a coordinator (``with Coordinator(address) as c: c.places()``).

    Raises (from every method): CoordinatorUnreachableError when it does not answer within
    ``timeout_s``; CoordinatorError for a request it refuses.
    """

    def __init__(self, address: str, timeout_s: float = REQUEST_TIMEOUT_S):
        from labgrid.remote.client import ClientSession, ensure_event_loop

        self.address = normalise_address(address)
        self.timeout_s = timeout_s
        self._loop = ensure_event_loop()
        self._session = ClientSession(self.address, self._loop)
        self._own_connection()
        self._log: list = []
        try:
            self._run(self._session.start(), "connect")
        except CoordinatorError:
            self._stop()
            raise
        if self._session.stopping.is_set():
            self._stop()
            raise self._unreachable("the connection closed")

    def _own_connection(self) -> None:
        """Give the session a TCP connection of its own. gRPC shares one connection between the
        channels of a process that have the same target and options, and the coordinator keys its
        clients by the connection's peer address (``assert peer not in self.clients``): a second
        session from this process (the next step, or a second lease in another thread) opened while
        the coordinator still counts the first would be refused. A local subchannel pool (gRPC's
        ``grpc.use_local_subchannel_pool``) keeps the connections apart."""
        import grpc
        from labgrid.remote.generated import labgrid_coordinator_pb2_grpc

        shared = self._session.channel
        options = [("grpc.keepalive_time_ms", 7500), ("grpc.keepalive_timeout_ms", 10000),
                   ("grpc.http2.ping_timeout_ms", 10000), ("grpc.http2.max_pings_without_data", 0),
                   ("grpc.use_local_subchannel_pool", 1)]  # labgrid's own options, plus the pool
        self._session.channel = grpc.aio.insecure_channel(target=self.address, options=options)
        self._session.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(self._session.channel)
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(shared.close())

    @property
    def me(self) -> str:
        """Who this client is to the coordinator: ``host/user`` (labgrid's; $LG_HOSTNAME and
        $LG_USERNAME override)."""
        return f"{self._session.gethostname()}/{self._session.getuser()}"

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the session (never raises)."""
        self._stop()

    def _stop(self) -> None:
        with contextlib.suppress(Exception), _captured_log([]):
            self._loop.run_until_complete(asyncio_wait(self._session.stop(), 5.0))
        with contextlib.suppress(Exception), _captured_log([]):
            self._loop.run_until_complete(asyncio_wait(self._session.close(), 5.0))

    def _unreachable(self, why: str) -> CoordinatorUnreachableError:
        detail = self._log[-1] if self._log else why
        return CoordinatorUnreachableError(
            f"no labgrid coordinator answers at {self.address}: {detail}", address=self.address,
            hint=f"start one (labgrid-coordinator -l {self.address}) or check the address; "
                 f"labgrid-client -x {self.address} places lists what it has")

    def _run(self, coroutine, what: str):
        """Run one request on the loop with the timeout; gRPC errors become typed errors."""
        import grpc

        with _captured_log(self._log):
            try:
                return self._loop.run_until_complete(asyncio_wait(coroutine, self.timeout_s))
            except TimeoutError:
                raise self._unreachable(f"{what}: no answer in {self.timeout_s:g} s") from None
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise self._unreachable(f"{what}: {exc.details()}") from None
                raise CoordinatorError(f"{self.address}: {what} refused: {exc.details()}",
                                       address=self.address) from None
            except Exception as exc:  # labgrid's ServerError when the stream broke
                if type(exc).__name__ in ("ServerError", "Error"):
                    raise self._unreachable(f"{what}: {exc}") from None
                raise

    def _sync(self) -> None:
        """Wait until the coordinator has sent every update up to now (places, resources)."""
        if not self._run(self._session.sync_with_coordinator(), "sync"):
            raise self._unreachable("the stream of updates broke")

    def _reservations(self) -> list:
        from labgrid.remote.common import Reservation
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        response = self._run(self._session.stub.GetReservations(pb.GetReservationsRequest()), "reservations")
        return [Reservation.from_pb2(r) for r in response.reservations]

    def places(self) -> list[PlaceInfo]:
        """Every place, by name, with its holder, reservation state and SSH address."""
        self._sync()
        reservations = self._reservations()
        return [self._info(place, reservations) for _, place in sorted(self._session.places.items())]

    def place(self, name: str) -> PlaceInfo:
        """The place ``name``. Raises NoSuchPlaceError."""
        for info in self.places():
            if info.name == name:
                return info
        raise self._no_place(f"no place named {name!r}")

    def _no_place(self, what: str) -> NoSuchPlaceError:
        names = ", ".join(sorted(self._session.places)) or "none"
        return NoSuchPlaceError(f"{self.address}: {what} (places: {names})", address=self.address,
                                hint=f"labgrid-client -x {self.address} places -v lists them with their tags")

    def _info(self, place, reservations: list) -> PlaceInfo:
        by_token = {r.token: r for r in reservations}
        held = by_token.get(place.reservation) if place.reservation else None
        tags = dict(place.tags)
        waiting = sum(1 for r in reservations if r.state.name == "waiting"
                      and _serves(place.name, tags, r.filters.get("main", {})))
        found = self._resources(place)
        ssh = next((_ssh(params) for cls, params in found if cls == "NetworkService"), None)
        return PlaceInfo(name=place.name, tags=tags, holder=place.acquired,
                         reservation=held.state.name if held else None,
                         reservation_owner=held.owner if held else None, waiting=waiting, ssh=ssh,
                         resources=tuple(sorted({cls for cls, _ in found})), comment=place.comment or "")

    def _resources(self, place) -> list:
        """(class, params) of every resource the place matches, in path order."""
        out = []
        for exporter, groups in sorted(self._session.resources.items()):
            for group, resources in sorted(groups.items()):
                for name, entry in sorted(resources.items()):
                    if "cls" in entry.data and place.hasmatch((exporter, group, entry.cls, name)):
                        out.append((entry.cls, dict(entry.params)))
        return out

    def reserve(self, want: dict) -> str:
        """A reservation for one place matching ``want`` (``{"name": NAME}`` or tags); its token."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=want)}, prio=0.0)
        return self._run(self._session.stub.CreateReservation(request), "reserve").reservation.token

    def poll(self, token: str) -> tuple:
        """``(state, place or None)`` of a reservation (polling keeps a waiting one alive)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        res = self._run(self._session.stub.PollReservation(pb.PollReservationRequest(token=token)), "poll")
        from labgrid.remote.common import Reservation

        found = Reservation.from_pb2(res.reservation)
        places = found.allocations.get("main") or [None]
        return found.state.name, places[0]

    def cancel(self, token: str) -> None:
        """Cancel a reservation (one already gone is not an error)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        try:
            request = pb.CancelReservationRequest(token=token)
            self._run(self._session.stub.CancelReservation(request), "cancel")
        except CoordinatorUnreachableError:
            raise
        except CoordinatorError as exc:
            if "does not exist" not in str(exc):
                raise

    def acquire(self, name: str) -> None:
        """Acquire a place. Raises NoSuchPlaceError, PlaceBusyError (already held)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        try:
            self._run(self._session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=name)), "acquire")
        except CoordinatorUnreachableError:
            raise
        except CoordinatorError as exc:
            if "does not exist" in str(exc):
                raise self._no_place(f"no place named {name!r}") from None
            raise PlaceBusyError(str(exc), address=self.address, place=name) from None

    def release(self, name: str) -> None:
        """Release a place (one not acquired is not an error)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        try:
            self._run(self._session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name)), "release")
        except CoordinatorUnreachableError:
            raise
        except CoordinatorError as exc:
            if "is not acquired" not in str(exc):
                raise


def asyncio_wait(coroutine, timeout_s: float):
    """``asyncio.wait_for`` (a coroutine for ``run_until_complete``)."""
    import asyncio

    return asyncio.wait_for(coroutine, timeout_s)


def _serves(name: str, tags: dict, want: dict) -> bool:
    """Whether a place (name, tags) matches a reservation filter (labgrid's scheduler: every
    filter pair among the place's tags, ``name`` counting as a tag)."""
    have = dict(tags, name=name)
    return all(have.get(k) == v for k, v in want.items())


def _holders(places: list, want: dict) -> tuple:
    """Who holds the places a filter could get: ``host/user``, or ``reserved by host/user``."""
    return tuple(sorted({p.holder or f"reserved by {p.reservation_owner}" for p in places
                         if _serves(p.name, p.tags, want) and (p.holder or p.reservation)}))


def _ssh(params: dict) -> SshAddress:
    return SshAddress(host=str(params.get("address")), port=int(params.get("port") or 22),
                      user=params.get("username") or None)


def list_places(address: str, timeout_s: float = REQUEST_TIMEOUT_S) -> list[PlaceInfo]:
    """Every place of the coordinator at ``address`` (see :meth:`Coordinator.places`)."""
    with Coordinator(address, timeout_s) as coordinator:
        return coordinator.places()


class PlaceLease:
    """``with PlaceLease(address, [{"name": "b1"}], wait_s=600, on_wait=print) as places:``
    reserve, wait for and acquire one place per filter; release them and cancel the reservations
    on the way out, however it is taken (see the module docstring).

    Filters are served one after another in sorted order (reserve, wait, acquire, then the
    next), so two runs that want the same places never hold one each while waiting for the other.
    ``on_wait(WaitStatus)`` is called once per poll while a reservation waits. ``problems``:
    what went wrong on the way out while another exception was already on its way (it is kept).

    Raises (on enter): CoordinatorUnreachableError; NoSuchPlaceError (no place of that name, or
    none with those tags: nothing to wait for); PlaceBusyError (still not allocated after
    ``wait_s`` seconds); CoordinatorError (an allocated place without a NetworkService).
    Raises (on exit, when nothing else is on its way): CoordinatorError when a release failed.
    """

    def __init__(self, address: str, wants: list, *, wait_s: float, on_wait: Callable | None = None,
                 poll_s: float = POLL_S, timeout_s: float = REQUEST_TIMEOUT_S):
        self.address = normalise_address(address)
        self.wants = sorted((dict(w) for w in wants), key=want_text)
        self.wait_s, self.poll_s, self.timeout_s = wait_s, poll_s, timeout_s
        self.on_wait = on_wait or (lambda status: None)
        self.tokens: list = []
        self.acquired: list = []
        self.places: list = []
        self.problems: list = []

    def __enter__(self) -> list[PlaceInfo]:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(_signals_raise())  # until __exit__ has released
        try:
            with Coordinator(self.address, self.timeout_s) as coordinator:
                for want in self.wants:
                    self._check(coordinator, want)
                    name = self._wait(coordinator, want)
                    self.places.append(self._take(coordinator, name))
        except BaseException:
            try:
                self._give_back(in_flight=True)
            finally:
                self._signals.close()
            raise
        return list(self.places)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._give_back(in_flight=exc_type is not None)
        finally:
            self._signals.close()

    def _check(self, coordinator: Coordinator, want: dict) -> None:
        places = coordinator.places()
        if not any(_serves(p.name, p.tags, want) for p in places):
            what = f"no place named {want['name']!r}" if set(want) == {"name"} else \
                f"no place has the tags {want_text(want)}"
            raise coordinator._no_place(what)

    def _wait(self, coordinator: Coordinator, want: dict) -> str:
        """Reserve and poll until the reservation is allocated; the place's name."""
        token = coordinator.reserve(want)
        self.tokens.append(token)
        start = time.monotonic()
        while True:
            state, place = coordinator.poll(token)
            if state in ("allocated", "acquired") and place:
                return place
            if state in ("expired", "invalid"):
                raise CoordinatorError(f"{self.address}: reservation {token} for {want_text(want)} is "
                                       f"{state}", address=self.address)
            waited = time.monotonic() - start
            holders = _holders(coordinator.places(), want)
            if waited >= self.wait_s:
                raise PlaceBusyError(
                    f"{self.address}: {want_text(want)} still held after {waited:.0f} s "
                    f"(by {', '.join(holders) or 'nobody: the queue is ahead of this run'})",
                    address=self.address, place=want.get("name"), holders=holders,
                    hint="wait longer (--wait-lock SECONDS), or ask the holder; "
                         f"labgrid-client -x {self.address} who lists who holds what")
            self.on_wait(WaitStatus(want_text(want), token, waited, self.wait_s, holders))
            time.sleep(self.poll_s)

    def _take(self, coordinator: Coordinator, name: str) -> PlaceInfo:
        coordinator.acquire(name)
        self.acquired.append(name)
        info = coordinator.place(name)
        if info.ssh is None:
            raise CoordinatorError(
                f"{self.address}: place {name} has no NetworkService resource: no SSH address to run on",
                address=self.address, place=name,
                hint=f"export one for it (docs/devices.md) and labgrid-client -p {name} add-match "
                     "EXPORTER/GROUP/NetworkService")
        return info

    def _give_back(self, in_flight: bool) -> None:
        """Release every place taken and cancel every reservation, deaf to Ctrl-C and SIGTERM
        meanwhile (a second signal must not leave a place held)."""
        if not (self.acquired or self.tokens):
            return
        failed = []
        with _signals_held(reraise=not in_flight):
            try:
                with Coordinator(self.address, self.timeout_s) as coordinator:
                    for name in reversed(self.acquired):
                        try:
                            coordinator.release(name)
                        except CoordinatorError as exc:
                            failed.append(f"{name}: {exc}")
                    for token in self.tokens:
                        coordinator.cancel(token)
            except CoordinatorError as exc:
                failed += [f"{name}: {exc}" for name in self.acquired]
        self.acquired, self.tokens = [], []
        if failed and in_flight:
            self.problems += failed
        elif failed:
            raise CoordinatorError(
                "could not release: " + "; ".join(failed), address=self.address,
                hint=f"release by hand: labgrid-client -x {self.address} -p PLACE release")


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP raise KeyboardInterrupt while a lease is held, unless the program handles them
    already (the CLI does: host/cli/signals.py); only on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_held(reraise: bool):
    """SIGINT, SIGTERM and SIGHUP are noted, not acted on, inside the block; with ``reraise``
    the first one noted is raised again after it (to the handlers in place before)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: noted.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if noted and reraise:
        signal.raise_signal(noted[0])
