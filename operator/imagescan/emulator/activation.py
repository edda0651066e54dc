"""Amazon Inspector's activation state per account and region, with the states the real service passes through.

Inspector is activated per account *and* region, one resource type (EC2, ECR, ...) at a time, and activation
is not instant: ``Enable`` puts a type into ENABLING and it becomes ENABLED a little later; ``Disable`` goes
through DISABLING to DISABLED. A client that treats ENABLING as ENABLED (and asks Image Builder to scan too
early) must be caught by the tests, so the emulator keeps these states. They advance lazily when read, by an
injectable clock, so no background thread is needed and tests can step time instead of sleeping. Tests may
also put a type into any state directly (SUSPENDED included; a state set directly never advances on its own)
and make ``Enable`` fail for a type with one of Inspector's error codes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable

from imagescan.emulator import generator

STATUSES = ("ENABLING", "ENABLED", "DISABLING", "DISABLED", "SUSPENDING", "SUSPENDED")
_SETTLES_TO = {"ENABLING": "ENABLED", "DISABLING": "DISABLED", "SUSPENDING": "SUSPENDED"}
# The account-level status when no type is ENABLED: the most "active" thing any type is doing.
_ACCOUNT_PRECEDENCE = ("ENABLING", "DISABLING", "SUSPENDING", "SUSPENDED")

Scope = tuple[str, str]  # (account id, region)


@dataclasses.dataclass(frozen=True)
class TypeState:
    """One resource type's state as BatchGetAccountStatus reports it."""

    status: str
    error_code: str | None = None
    error_message: str | None = None


@dataclasses.dataclass
class _Stored:
    state: TypeState
    settles_at: float | None = None  # clock reading at which a transitional status becomes final


def account_status(states: Iterable[TypeState]) -> str:
    """ENABLED when any type is; otherwise the furthest-along transition, else DISABLED."""
    statuses = {state.status for state in states}
    if "ENABLED" in statuses:
        return "ENABLED"
    return next((status for status in _ACCOUNT_PRECEDENCE if status in statuses), "DISABLED")


class Activations:
    """Inspector's per-(account, region) resource-type states; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, delay_s: float = 0.0) -> None:
        self.clock = clock
        self.delay_s = delay_s
        """How long ENABLING/DISABLING last; 0 makes Enable and Disable take effect at once."""
        self._lock = threading.Lock()
        self._scopes: dict[Scope, dict[str, _Stored]] = {}
        self._failures: dict[tuple[str, str, str], tuple[str, str]] = {}

    # --- test knobs ----------------------------------------------------------------------------------------

    def set(self, scope: Scope, statuses: dict[str, str]) -> None:
        """Put types into these statuses now, clearing their errors; transitional ones stay until changed."""
        for resource, status in statuses.items():
            _check_type(resource)
            if status not in STATUSES:
                raise ValueError(f"unknown Inspector status {status}; use one of {STATUSES}")
        with self._lock:
            stored = self._stored(scope)
            for resource, status in statuses.items():
                stored[resource] = _Stored(TypeState(status))

    def fail(self, scope: Scope, resource: str, error_code: str, message: str) -> None:
        """Make every later Enable of this type fail with this code, leaving it DISABLED."""
        _check_type(resource)
        with self._lock:
            self._failures[(*scope, resource)] = (error_code, message)

    def heal(self, scope: Scope, resource: str) -> None:
        """Let Enable of this type succeed again (the error already recorded stays until the next Enable)."""
        with self._lock:
            self._failures.pop((*scope, resource), None)

    # --- what the operations do ----------------------------------------------------------------------------

    def states(self, scope: Scope) -> dict[str, TypeState]:
        """Every resource type's state, transitions that are due applied first."""
        with self._lock:
            return {resource: self._settled(stored) for resource, stored in self._stored(scope).items()}

    def enable(self, scope: Scope, resources: Iterable[str]) -> dict[str, TypeState]:
        """Start activating these types; returns the ones that failed, with their error."""
        failed: dict[str, TypeState] = {}
        with self._lock:
            stored = self._stored(scope)
            for resource in resources:
                current = self._settled(stored[resource])
                failure = self._failures.get((*scope, resource))
                if failure is not None:
                    stored[resource] = _Stored(TypeState("DISABLED", *failure))
                    failed[resource] = stored[resource].state
                elif current.status == "SUSPENDING":  # the enum's own code for this conflict
                    failed[resource] = TypeState(
                        current.status, "SUSPEND_IN_PROGRESS", "The account is being suspended; try again later."
                    )
                elif current.status not in ("ENABLING", "ENABLED"):  # enabling twice is not an error
                    stored[resource] = self._moving("ENABLING")
        return failed

    def disable(self, scope: Scope, resources: Iterable[str]) -> None:
        """Start deactivating these types; disabling a disabled type only clears its error."""
        with self._lock:
            stored = self._stored(scope)
            for resource in resources:
                current = self._settled(stored[resource])
                if current.status in ("ENABLING", "ENABLED"):
                    stored[resource] = self._moving("DISABLING")
                elif current.status == "DISABLED":
                    stored[resource] = _Stored(TypeState("DISABLED"))

    # --- internals (lock held) -----------------------------------------------------------------------------

    def _stored(self, scope: Scope) -> dict[str, _Stored]:
        return self._scopes.setdefault(
            scope, {resource: _Stored(TypeState("DISABLED")) for resource in generator.INSPECTOR_RESOURCE_TYPES}
        )

    def _settled(self, stored: _Stored) -> TypeState:
        if stored.settles_at is not None and self.clock() >= stored.settles_at:
            stored.state, stored.settles_at = TypeState(_SETTLES_TO[stored.state.status]), None
        return stored.state

    def _moving(self, transitional: str) -> _Stored:
        if self.delay_s <= 0:
            return _Stored(TypeState(_SETTLES_TO[transitional]))
        return _Stored(TypeState(transitional), self.clock() + self.delay_s)


def _check_type(resource: str) -> None:
    if resource not in generator.INSPECTOR_RESOURCE_TYPES:
        raise ValueError(f"unknown Inspector resource type {resource}")
