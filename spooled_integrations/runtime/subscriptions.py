"""Declarative subscriptions: which events go where, validated once with every problem.

A :class:`Subscription` names events (canonical names, aliases, globs such as
``job.*``, or ``*``), narrows them with filters, and names at most one target with the key of its kind: a
Celery ``task``, a Dramatiq ``actor``, or any kind a framework module registered
(:mod:`~spooled_integrations.runtime.targets`); none means "signal receivers only",
useful to document intent and to see the events in ``check``. :func:`load_subscriptions` reads
Python objects or a TOML/YAML file and raises one
:class:`~spooled_integrations.errors.SubscriptionError` listing every problem with
its position, so a bad deploy shows the whole list at once instead of one error per
restart.

Files hold one top-level list named ``subscription`` (``subscriptions`` is accepted
too). TOML::

    [[subscription]]
    name = "emails-done"
    events = ["job.completed"]
    queue = "emails"
    task = "billing.tasks.on_email_sent"
    options = { countdown = 5 }
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from spooled_integrations._problems import shown_value
from spooled_integrations._suggest import by_meaning, did_you_mean
from spooled_integrations.errors import ConfigurationError, SubscriptionError
from spooled_integrations.protocol import Event, EventType, resolve, wire_dotted_name, wire_variant
from spooled_integrations.protocol.vocabulary import EVENT_SYNONYMS
from spooled_integrations.runtime.targets import target_kind, target_kinds

__all__ = [
    "Subscription",
    "SubscriptionSet",
    "expand_events",
    "in_rule_order",
    "load_subscriptions",
    "parse_subscriptions",
    "position",
]

# Which filterable fields each event type can carry (backend data plus Go structs).
_FIELDS: dict[EventType, frozenset[str]] = {}
_JOB = frozenset({"job_id", "queue_name"})
_QUEUE = frozenset({"queue_name"})
_WORKER_Q = frozenset({"worker_id", "queue_name"})
_WORKER = frozenset({"worker_id"})
for _member in EventType:
    if _member.category == "job":
        _FIELDS[_member] = _JOB
    elif _member.category == "queue":
        _FIELDS[_member] = _QUEUE
    elif _member in (EventType.WORKER_LEFT, EventType.WORKER_HEARTBEAT):
        _FIELDS[_member] = _WORKER
    elif _member.category == "worker":
        _FIELDS[_member] = _WORKER_Q
    else:
        _FIELDS[_member] = frozenset()

_FILTER_FIELD = {"queue": "queue_name", "job_id": "job_id", "worker_id": "worker_id"}
_FILTER_NOUN = {"queue": "a queue name", "job_id": "a job id", "worker_id": "a worker id"}
_GLOB_CHARS = frozenset("*?[")
_SCALARS = (str, int, float, bool, type(None))


def _spellings() -> dict[str, EventType]:
    """Every known spelling (lower-cased) → canonical type; used for globs and hints."""
    table: dict[str, EventType] = {}
    for member in EventType:
        for spelling in (member.value, wire_variant(member), wire_dotted_name(member)):
            table[spelling.lower()] = member
    return table


_SPELLINGS = _spellings()


def expand_events(names: Iterable[str]) -> tuple[frozenset[str], bool, list[str]]:
    """Resolve event names and globs to canonical type strings.

    Returns ``(types, matches_all, problems)``: ``matches_all`` is true for ``*``
    (which also matches event types this package does not know); each problem is
    ``"events[i]: ..."``.
    """
    types: set[str] = set()
    matches_all = False
    problems: list[str] = []
    for index, name in enumerate(names):
        where = f"events[{index}]"
        text = name.strip()
        if not text:
            problems.append(f"{where}: empty event name")
            continue
        if text == "*":
            matches_all = True
            types.update(member.value for member in EventType)
            continue
        if _GLOB_CHARS & set(text):
            pattern = text.lower()
            found = {m.value for s, m in _SPELLINGS.items() if fnmatch.fnmatchcase(s, pattern)}
            if not found:
                problems.append(f"{where}: pattern {name!r} matches no known event")
            types.update(found)
            continue
        member = resolve(text)
        if member is None:
            problems.append(f"{where}: unknown event {name!r}{_suggest(text)}")
        else:
            types.add(member.value)
    return frozenset(types), matches_all, problems


def _suggest(name: str) -> str:
    """By meaning for job-like names (``job.done``, ``JobDone``), else by spelling."""
    job_like = name.lower().startswith("job") or "." not in name
    meant = by_meaning(name, EVENT_SYNONYMS) if job_like else None
    if meant is not None:
        return f" (did you mean {meant!r}?)"
    return did_you_mean(name.lower(), {k: v.value for k, v in _SPELLINGS.items()})


def _as_list(value: Any) -> Any:
    """Accept one string where a list of strings is expected."""
    return [value] if isinstance(value, str) else value


class Subscription(BaseModel):
    """One routing rule: these events, narrowed by these filters, go to this target.

    Construct directly (raises :class:`SubscriptionError` listing every problem) or
    load many with :func:`load_subscriptions`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    events: list[str] = Field(default_factory=list)
    queue: str | list[str] | None = None
    job_id: str | list[str] | None = None
    worker_id: str | list[str] | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    target_kind: str | None = None
    """The registered kind of the target (``task``, ``actor``...); set from its key."""
    target_name: str | None = None
    """The task, actor... name; ``{"task": "x"}`` is ``target_kind="task", target_name="x"``."""
    delivery: Literal["once", "every_node"] = "once"
    payload: Literal["event", "data"] = "event"
    options: dict[str, Any] = Field(default_factory=dict)
    max_age: float | None = None

    _types: frozenset[str] = PrivateAttr(default=frozenset())
    _matches_all: bool = PrivateAttr(default=False)
    _target_problems: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, **data: Any) -> None:
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self)
        except ValidationError as exc:
            raise SubscriptionError(_validation_problems(exc)) from None
        problems = self.problems()
        if problems:
            raise SubscriptionError(problems)

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Subscription:
        """Type validation only (no semantic check): the loader collects problems itself.

        Passing ``self_instance`` makes pydantic skip our ``__init__``.
        """
        instance = cls.__new__(cls)
        cls.__pydantic_validator__.validate_python(dict(data), self_instance=instance)
        return instance

    @model_validator(mode="wrap")
    @classmethod
    def _target_key(
        cls, data: Any, handler: ModelWrapValidatorHandler[Subscription]
    ) -> Subscription:
        """``{"task": "x"}`` -> ``target_kind="task", target_name="x"`` for every
        registered kind; problems (two targets, a non-string name) wait for
        :meth:`problems`, so they are reported with the others."""
        if not isinstance(data, Mapping):
            return handler(data)
        given = [key for key in data if isinstance(key, str) and _is_kind_key(key)]
        if not given:
            return handler(data)
        rest = {key: value for key, value in data.items() if key not in given}
        problems = []
        explicit = [key for key in ("target_kind", "target_name") if key in rest]
        if len(given) > 1 or explicit:
            problems.append(f"{'/'.join(given + explicit)}: give one target, not both")
        kind, name = given[0], data[given[0]]
        if not explicit:
            if isinstance(name, str):
                rest["target_kind"], rest["target_name"] = kind, name
            elif name is not None:
                problems.append(f"{kind}: must be a string, got {type(name).__name__}")
        instance = handler(rest)
        instance._target_problems = tuple(problems)
        return instance

    @field_validator("events", mode="before")
    @classmethod
    def _one_event(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("queue", "job_id", "worker_id", mode="before")
    @classmethod
    def _string_or_strings(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError("must be a string or a list of strings")

    @model_validator(mode="after")
    def _expand(self) -> Subscription:
        self._types, self._matches_all, _ = expand_events(self.events)
        return self

    # -- derived views -------------------------------------------------------------

    @property
    def event_types(self) -> frozenset[str]:
        """Canonical types this subscription matches (``*`` expands to all known ones)."""
        return self._types

    @property
    def matches_all(self) -> bool:
        """True for ``*``: also matches event types unknown to this package."""
        return self._matches_all

    @property
    def target(self) -> str | None:
        """``<kind>:<name>`` (``task:billing.on_done``), or ``None`` for signal-only rules."""
        if self.target_kind is None or self.target_name is None:
            return None
        return f"{self.target_kind}:{self.target_name}"

    @property
    def task(self) -> str | None:
        """The Celery task name (read-only; kept for code written before target kinds)."""
        return self.target_name if self.target_kind == "task" else None

    @property
    def actor(self) -> str | None:
        """The Dramatiq actor name (read-only; kept for code written before target kinds)."""
        return self.target_name if self.target_kind == "actor" else None

    def filter_values(
        self, field: Literal["queue", "job_id", "worker_id"]
    ) -> frozenset[str] | None:
        """The accepted values of one filter, or ``None`` when it does not filter."""
        value = getattr(self, field)
        if value is None:
            return None
        return frozenset([value] if isinstance(value, str) else value)

    def build_payload(self, event: Event) -> dict[str, Any]:
        """What the target receives: ``event.to_dict()`` or a copy of ``event.data``."""
        return event.to_dict() if self.payload == "event" else dict(event.data)

    # -- validation ----------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every semantic problem, each as ``"<field>: <message>"`` (empty when valid)."""
        problems: list[str] = []
        if not self.events:
            problems.append("events: empty; list at least one event name, alias or glob")
        types, matches_all, event_problems = expand_events(self.events)
        problems.extend(event_problems)
        problems.extend(self._target_problems or _target_problems(self))
        if self.name is not None and not self.name.strip():
            problems.append("name: empty string")
        if types and not matches_all:
            problems.extend(_impossible_filters(self, types))
        for field in ("queue", "job_id", "worker_id"):
            value = getattr(self, field)
            if isinstance(value, list) and not value:
                problems.append(f"{field}: empty list matches nothing; omit the filter instead")
        problems.extend(_where_problems(self.where))
        if self.max_age is not None and not self.max_age > 0:
            problems.append(f"max_age: must be a positive number of seconds, got {self.max_age}")
        try:
            json.dumps(self.options, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"options: not JSON-serializable ({exc})")
        return problems


def _is_kind_key(key: str) -> bool:
    return key not in Subscription.model_fields and target_kind(key) is not None


def _target_problems(sub: Subscription) -> list[str]:
    kind, name = sub.target_kind, sub.target_name
    if kind is None and name is None:
        return []
    if kind is None or name is None:
        return ["target_kind/target_name: give both or neither"]
    if target_kind(kind) is None:
        known = target_kinds()
        return [
            f"target_kind: unknown target kind {kind!r}{did_you_mean(kind, known)}; "
            f"registered: {', '.join(known)} (a framework module registers its kind "
            "when it is imported)"
        ]
    if not name.strip():
        return [f"{kind}: empty string"]
    return []


def _unknown_field(key: str) -> str:
    """``unknown field``, with the field or target kind it may be a typo of."""
    kinds = target_kinds()
    hint = did_you_mean(key, [*Subscription.model_fields, *kinds])
    if hint:
        return f"unknown field{hint}"
    return (
        f"unknown field (a target is named by its kind: {', '.join(kinds)}; a framework "
        "module registers its own kind when it is imported)"
    )


def _impossible_filters(sub: Subscription, types: frozenset[str]) -> list[str]:
    problems = []
    carried: set[str] = set()
    for name in types:
        carried |= _FIELDS[EventType(name)]
    for filter_name, field in _FILTER_FIELD.items():
        if getattr(sub, filter_name) is not None and field not in carried:
            listed = ", ".join(sorted(types))
            problems.append(
                f"{filter_name}: none of the selected events ({listed}) carries "
                f"{_FILTER_NOUN[filter_name]}, so this filter can never match"
            )
    return problems


def _where_problems(where: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in where.items():
        label = f"where.{key}"
        if not key:
            problems.append("where: empty field name")
        elif isinstance(value, (list, tuple)):
            if not value:
                problems.append(f"{label}: empty list matches nothing")
            elif not all(isinstance(v, _SCALARS) for v in value):
                problems.append(f"{label}: list items must be strings, numbers, booleans or null")
        elif not isinstance(value, _SCALARS):
            problems.append(
                f"{label}: must be a string, number, boolean, null or a list of them "
                f"(got {type(value).__name__})"
            )
    return problems


def _loc(parts: Sequence[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _loc(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = _unknown_field(str(error["loc"][-1])) if error["loc"] else "unknown field"
        else:
            message = message.removeprefix("Value error, ")
            if "got " not in message:
                message = f"{message}, got {shown_value(error.get('input'))}"
        problems.append(f"{loc}: {message}" if loc else message)
    return problems


class SubscriptionSet(Sequence[Subscription]):
    """A validated, immutable list of subscriptions (the router's input)."""

    __slots__ = ("_items",)

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        items = tuple(subscriptions)
        problems = _set_problems(list(enumerate(items)))
        if problems:
            raise SubscriptionError(problems)
        self._items = items

    @overload
    def __getitem__(self, index: int) -> Subscription: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Subscription]: ...
    def __getitem__(self, index: int | slice) -> Subscription | Sequence[Subscription]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"SubscriptionSet({len(self._items)} subscriptions)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SubscriptionSet):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def targets(self) -> list[Subscription]:
        """The subscriptions that publish to a target (a task, an actor...)."""
        return [s for s in self._items if s.target is not None]


def position(index: int, name: str | None) -> str:
    """``subscriptions[3] (name='emails-done')``: how problems point at a rule."""
    return f"subscriptions[{index}]" + (f" (name={name!r})" if name else "")


def _set_problems(items: Sequence[tuple[int, Subscription]]) -> list[str]:
    """Per-rule problems plus duplicate names, each prefixed with the rule's position."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, sub in items:
        prefix = position(index, sub.name)
        problems.extend(f"{prefix}.{p}" for p in sub.problems())
        if sub.name:
            if sub.name in seen:
                problems.append(f"{prefix}.name: duplicate of {position(seen[sub.name], None)}")
            else:
                seen[sub.name] = index
    return problems


def load_subscriptions(source: Any) -> SubscriptionSet:
    """Validate subscriptions from Python objects or a file; report every problem at once.

    ``source`` is a :class:`SubscriptionSet` (returned as is), a sequence of dicts
    and/or :class:`Subscription` objects, a mapping with a ``subscription`` list (a
    parsed file), JSON text of such a list, or a path to a ``.toml`` / ``.yaml`` /
    ``.yml`` file.
    Raises :class:`SubscriptionError` (every problem, with positions) or
    :class:`ConfigurationError` (unreadable file, wrong shape).
    """
    if isinstance(source, SubscriptionSet):
        return source
    rules, problems = parse_subscriptions(source)
    if problems:
        raise SubscriptionError(problems)
    return SubscriptionSet([sub for _, sub in rules])


def _json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"subscriptions: the text starts like JSON but is not ({exc.msg} at line "
            f"{exc.lineno}, column {exc.colno}); give a JSON list of rules or a file path"
        ) from None


def parse_subscriptions(source: Any) -> tuple[list[tuple[int, Subscription]], list[str]]:
    """Every rule of ``source`` that could be read, with its position, and every problem.

    Unlike :func:`load_subscriptions` it returns the rules of a set with problems too
    (a rule with a bad field without that field), so a framework can check their
    targets and report every problem at once. Raises :class:`ConfigurationError` for
    a source that is not a list of rules.
    """
    if isinstance(source, SubscriptionSet):
        return list(enumerate(source)), []
    if isinstance(source, str) and source.lstrip()[:1] in ("[", "{"):
        source = _json_text(source)  # a settings value holding the rules themselves
    elif isinstance(source, (str, os.PathLike)):
        source = _read_file(Path(source))
    if isinstance(source, Mapping):
        source = _unwrap_document(source)
    if not isinstance(source, (list, tuple)):
        raise ConfigurationError(
            "subscriptions must be a list of mappings or Subscription objects, a path to a "
            f".toml/.yaml file, or a SubscriptionSet; got {type(source).__name__}"
        )
    rules: list[tuple[int, Subscription]] = []
    problems: list[str] = []
    for index, raw in enumerate(source):
        if isinstance(raw, Subscription):
            rules.append((index, raw))
        elif not isinstance(raw, Mapping):
            problems.append(
                f"{position(index, None)}: expected a mapping, got {type(raw).__name__}"
            )
        else:
            name = raw.get("name")
            prefix = position(index, name if isinstance(name, str) else None)
            try:
                rules.append((index, Subscription._parse(raw)))
            except ValidationError as exc:
                problems.extend(f"{prefix}.{p}" for p in _validation_problems(exc))
                # Check what did parse too, so one bad field does not hide the others.
                rest = _without_bad_fields(raw, exc)
                if rest is not None:
                    rules.append((index, rest))
    problems.extend(_set_problems(rules))
    return rules, in_rule_order(problems)


def in_rule_order(problems: Iterable[str]) -> list[str]:
    """``problems`` sorted by the rule they are about (``subscriptions[i]...``), each
    rule's in the order found; problems about no rule first."""
    return sorted(problems, key=_problem_order)


def _without_bad_fields(raw: Mapping[str, Any], exc: ValidationError) -> Subscription | None:
    bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
    try:
        return Subscription._parse({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _problem_order(problem: str) -> int:
    # Stable sort by rule position keeps each rule's problems in field order.
    if problem.startswith("subscriptions["):
        return int(problem[len("subscriptions[") : problem.index("]")])
    return -1


def _unwrap_document(document: Mapping[str, Any]) -> Any:
    keys = set(document)
    known = keys & {"subscription", "subscriptions"}
    unknown = keys - known
    if unknown or len(known) != 1:
        found = ", ".join(sorted(map(str, keys))) or "nothing"
        raise ConfigurationError(
            "a subscription file holds one top-level list named 'subscription' "
            f"(TOML: [[subscription]] tables); found {found}"
        )
    return document[known.pop()]


def _read_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigurationError(f"{path}: unsupported subscription file type (use .toml or .yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{path}: cannot read subscription file ({exc.strerror})"
        ) from None
    if suffix == ".toml":
        return _parse_toml(path, text)
    return _parse_yaml(path, text)


def _parse_toml(path: Path, text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML ({exc})") from None


def _yaml_problem(exc: Exception) -> str:
    """What is wrong and where, without PyYAML's quote of the line (a secret on that
    line would show, cut where no redaction recognises it)."""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = ": ".join(str(part) for part in parts if part) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    return text


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigurationError(
            f"{path}: reading YAML needs PyYAML; install it with "
            "'pip install spooled-integrations[yaml]' or use a .toml file"
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: invalid YAML ({_yaml_problem(exc)})") from None
    if document is None:
        return []
    return document
