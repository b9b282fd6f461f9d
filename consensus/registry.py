"""Where state machines are found, the way Django's admin finds ``admin.py`` modules.

``@register("kv")`` on a ``StateMachine`` subclass (or a seed-style class with a ``callback``
method) in an installed app's ``statemachines.py`` makes it available to groups whose config names
it: ``"groups": [{"id": 1, "stateMachine": "kv"}]``. ``ConsensusConfig.ready()`` calls
``autodiscover()``; ``SimpleConsensusConfig`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.utils.module_loading import autodiscover_modules

from .statemachine import CallbackStateMachine, LogOnlyStateMachine, StateMachine

T = TypeVar("T", bound=type)


class AlreadyRegistered(Exception):
    pass


class NotRegistered(KeyError):
    pass


class StateMachineRegistry:
    def __init__(self) -> None:
        self._registry: dict[str, type[StateMachine]] = {}

    def register(self, name: str, machine: type[Any]) -> type[StateMachine]:
        if not isinstance(name, str) or not name:
            raise ValueError("a state machine needs a non-empty name")
        if name in self._registry and self._registry[name] is not machine:
            raise AlreadyRegistered(f"state machine {name!r} is already registered")
        if not isinstance(machine, type):
            raise TypeError(f"register a class, not {machine!r}")
        if not issubclass(machine, StateMachine):
            if not callable(getattr(machine, "callback", None)):
                raise TypeError(
                    f"{machine.__name__} needs to subclass StateMachine or define callback(msg)"
                )
            machine = _adapt_callback_class(machine)
        self._registry[name] = machine
        return machine

    def unregister(self, name: str) -> None:
        if name not in self._registry:
            raise NotRegistered(name)
        del self._registry[name]

    def is_registered(self, name: str) -> bool:
        return name in self._registry

    def names(self) -> list[str]:
        return sorted(self._registry)

    def create(self, name: str, group_id: int) -> StateMachine:
        try:
            machine = self._registry[name]
        except KeyError:
            raise NotRegistered(
                f"no state machine named {name!r} (registered: {', '.join(self.names())})"
            ) from None
        return machine(group_id)


registry = StateMachineRegistry()
registry.register("log", LogOnlyStateMachine)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register("kv")``. Returns the class unchanged."""

    def decorator(machine: T) -> T:
        registry.register(name, machine)
        return machine

    return decorator


def autodiscover() -> None:
    autodiscover_modules("statemachines", register_to=registry)


def _adapt_callback_class(user_class: type[Any]) -> type[StateMachine]:
    """Wrap a seed-style ``callback(msg)`` class (no base class needed) as a state machine."""

    class Adapted(CallbackStateMachine):
        def __init__(self, group_id: int) -> None:
            super().__init__(group_id)
            self.target = user_class()

        def callback(self, msg: str) -> Any:
            return self.target.callback(msg)

    Adapted.__name__ = Adapted.__qualname__ = f"{user_class.__name__}Adapter"
    return Adapted
