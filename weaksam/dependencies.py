"""What each workflow rule reads from the config, and the rerun triggers that follow from it.

Every stage package declares, next to its code, the config keys each of its rules reads
(``CONFIG_KEYS`` in ``weaksam/<stage>/__init__.py``, a :class:`RuleKeys` per rule). From those
declarations:

- ``rule_digest(cfg, rule, split)`` is the rule's Snakemake ``params`` digest: a job reruns
  when, and only when, a key it reads changes (its inputs changing aside);
- ``restrict(cfg, rule, split)`` is the config the rule's job is given: a key the rule does not
  declare is replaced by a value that raises :class:`UndeclaredKeyError` on any use, so an
  undeclared read fails the job instead of silently missing a rerun.

Two kinds of keys are readable by every rule and digested by none:

- ``STRUCTURE_KEYS`` decide which jobs and files exist (heads, splits, the results folder):
  changing one adds or removes jobs, it never reruns an existing one;
- ``PERFORMANCE_KEYS`` change how fast or where a job runs, not what it writes (checkpoint
  intervals, workers, threads, devices, batch sizes of SAM prompts, shard counts).

Every leaf key of the config belongs to at least one rule or to one of those two sets
(``undeclared_keys()`` is empty; tested).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib
import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from weaksam.config import WeaksamConfig

# the packages whose ``CONFIG_KEYS`` declare the workflow's rules
STAGE_PACKAGES = (
    "weaksam.data",
    "weaksam.cam",
    "weaksam.proposals",
    "weaksam.wsod",
    "weaksam.pgt",
    "weaksam.retrain",
    "weaksam.wsis",
    "weaksam.detr",
    "weaksam.evaluation",
)

STRUCTURE_KEYS: tuple[str, ...] = (
    "dataset.name",
    "dataset.train_split",
    "dataset.test_split",
    "assets.cache_dir",
    "wsod.heads",
    "wsod.proposal_methods",
    "proposals.selective_search",
    "retrain.heads",
    "retrain.compare_without_roi_drop",
    "retrain.detector",
    "wsis.heads",
    "wsis.segmenter",
    "evaluation.stage_bounds",
    "predict.images",
    "predict.models",
)

PERFORMANCE_KEYS: tuple[str, ...] = (
    "compute.device",
    "compute.shards",
    "compute.workers",
    "compute.train_gpus",
    "compute.shard_threads",
    "compute.detector_threads",
    "sam.points_per_batch",
    "sam.mask_chunk",
    "sam.cpu_decoder",
    "sam.gpu_decoder",
    "sam.gpu_compile",
    "sam.verify_sha256",
    "cam.checkpoint_every",
    "wsod.checkpoint_every",
    "retrain.checkpoint_every",
    "retrain.dino.checkpoint_every",
    "wsis.mask2former.checkpoint_every",
)


@dataclass(frozen=True)
class RuleKeys:
    """The config keys one rule reads. An entry is a key (``cam.lr``) or a whole section or
    sub-section (``wsod.mist``), possibly with ``*`` (``dataset.shapes.*``).

    ``test_split_keys`` are read only by the job of the test split (``{split}`` wildcard);
    ``head_keys`` only by the jobs of one WSOD head (``{head}`` wildcard). ``unhashed`` keys are
    read without being rerun triggers, for one of two reasons, said where they are declared:
    a policy for bad input (it decides whether a job fails, never what a finished job wrote),
    or a setting recorded in a model file as its default for later use outside the workflow,
    while the workflow's own rules read the current value.
    """

    keys: tuple[str, ...]
    test_split_keys: tuple[str, ...] = ()
    head_keys: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    unhashed: tuple[str, ...] = ()


class UndeclaredKeyError(RuntimeError):
    """A rule read a config key that its stage does not declare in ``CONFIG_KEYS``."""


class Undeclared:
    """Stands in for a config value a rule does not declare: any use raises."""

    __slots__ = ("_key", "_rule")

    def __init__(self, key: str, rule: str) -> None:
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_rule", rule)

    def _fail(self, *_args: Any, **_kwargs: Any) -> typing.NoReturn:
        key = object.__getattribute__(self, "_key")
        rule = object.__getattribute__(self, "_rule")
        raise UndeclaredKeyError(
            f"rule {rule} reads config key {key}, which its stage does not declare "
            f"(CONFIG_KEYS in weaksam/<stage>/__init__.py): a change of it would not rerun the rule"
        )

    def __getattr__(self, name: str) -> Any:
        self._fail()

    def __repr__(self) -> str:
        return f"<undeclared config key {object.__getattribute__(self, '_key')}>"

    __bool__ = __str__ = __format__ = __hash__ = __eq__ = __ne__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __len__ = __iter__ = __contains__ = _fail
    __getitem__ = __int__ = __float__ = __index__ = __neg__ = __abs__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __pow__ = _fail
    # a copy of a section (asdict) is a use; a pickle is not (a data loader's worker processes
    # get the job's config this way), and what it unpickles to raises on use again
    __deepcopy__ = __copy__ = __call__ = _fail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        key = object.__getattribute__(self, "_key")
        return (Undeclared, (key, object.__getattribute__(self, "_rule")))


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


@cache
def leaf_keys(cls: type = WeaksamConfig, prefix: str = "") -> tuple[str, ...]:
    """Every leaf key of the config, dotted (``wsod.mist.top_fraction``), in field order."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if _is_section(hints[f.name]):
            out.extend(leaf_keys(hints[f.name], key + "."))
        else:
            out.append(key)
    return tuple(out)


def expand(patterns: Iterable[str]) -> frozenset[str]:
    """The leaf keys that ``patterns`` name: a key, a (sub-)section, or an fnmatch pattern."""
    return _expand(tuple(patterns))


@cache
def _expand(patterns: tuple[str, ...]) -> frozenset[str]:
    leaves = leaf_keys()
    out: set[str] = set()
    for pattern in patterns:
        hits = [
            k
            for k in leaves
            if k == pattern or k.startswith(pattern + ".") or fnmatch.fnmatchcase(k, pattern)
        ]
        if not hits:
            raise ValueError(f"config key pattern {pattern!r} names no key of the config")
        out.update(hits)
    return frozenset(out)


@cache
def registry() -> Mapping[str, RuleKeys]:
    """Every rule's declared keys, gathered from the stage packages."""
    rules: dict[str, RuleKeys] = {}
    for name in STAGE_PACKAGES:
        declared: Mapping[str, RuleKeys] = importlib.import_module(name).CONFIG_KEYS
        for rule, keys in declared.items():
            if rule in rules:
                raise ValueError(f"rule {rule} is declared twice ({name})")
            rules[rule] = keys
    return rules


def declared(rule: str) -> RuleKeys:
    try:
        return registry()[rule]
    except KeyError:
        raise KeyError(f"rule {rule} declares no config keys (CONFIG_KEYS)") from None


def rule_keys(
    rule: str, wildcards: Mapping[str, str] | None = None, test_split: str | None = None
) -> frozenset[str]:
    """The leaf keys that the job of ``rule`` with ``wildcards`` reads and is rerun for."""
    spec = declared(rule)
    wildcards = wildcards or {}
    keys = expand(spec.keys)
    if spec.test_split_keys and wildcards.get("split") == test_split is not None:
        keys |= expand(spec.test_split_keys)
    head = wildcards.get("head")
    if head is not None and head in spec.head_keys:
        keys |= expand(spec.head_keys[head])
    return keys


def value_of(cfg: WeaksamConfig, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def rule_digest(
    cfg: WeaksamConfig, rule: str, wildcards: Mapping[str, str] | None = None, *extra: Any
) -> str:
    """sha256 (16 hex) of the values of the keys the job reads (and of ``extra``): the rule's
    rerun trigger, and the ``config_digest`` of the stores it writes."""
    keys = sorted(rule_keys(rule, wildcards, cfg.dataset.test_split))
    payload = {k: _plain(value_of(cfg, k)) for k in keys}
    text = json.dumps([payload, *extra] if extra else payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def readable_keys(
    rule: str, wildcards: Mapping[str, str] | None = None, test_split: str | None = None
) -> frozenset[str]:
    """What the job may read: its keys, its unhashed keys, structure and performance keys."""
    spec = declared(rule)
    return (
        rule_keys(rule, wildcards, test_split)
        | expand(spec.unhashed)
        | expand(STRUCTURE_KEYS)
        | expand(PERFORMANCE_KEYS)
    )


def restrict(
    cfg: WeaksamConfig, rule: str, wildcards: Mapping[str, str] | None = None
) -> WeaksamConfig:
    """``cfg`` with every key the job does not declare replaced by :class:`Undeclared`."""
    allowed = readable_keys(rule, wildcards, cfg.dataset.test_split)

    def walk(section: Any, prefix: str) -> Any:
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            key = f"{prefix}{f.name}"
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                changes[f.name] = walk(value, key + ".")
            elif key not in allowed:
                changes[f.name] = Undeclared(key, rule)
        return dataclasses.replace(section, **changes)

    out: WeaksamConfig = walk(cfg, "")
    return out


def declared_dict(section: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` of a config section without the keys undeclared for this rule
    (what a checkpoint records of the config it was trained under)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, Undeclared):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = declared_dict(value)
        elif isinstance(value, tuple | list):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


def undeclared_keys() -> list[str]:
    """Config keys that no rule reads and that are neither structure nor performance keys."""
    covered = set(expand(STRUCTURE_KEYS) | expand(PERFORMANCE_KEYS))
    for spec in registry().values():
        covered |= expand(spec.keys) | expand(spec.test_split_keys) | expand(spec.unhashed)
        for keys in spec.head_keys.values():
            covered |= expand(keys)
    return [k for k in leaf_keys() if k not in covered]


def job_config(job: Any) -> WeaksamConfig:
    """The config of a running Snakemake job (``snakemake`` in a rule's script), validated and
    restricted to the keys its rule declares."""
    from weaksam.config import load_config

    return restrict(load_config(job.config), job.rule, dict(job.wildcards.items()))
