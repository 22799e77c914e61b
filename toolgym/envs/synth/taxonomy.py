"""A domain taxonomy: the map the tool evolution works on (K2 evolved tools from one).

A ``Taxonomy`` lists domains (``clinic``), each with a parent area (``health``), neighbouring
domains (``pharmacy``) and entities (``clinic_patient``) with typed fields. Evolution adds
operations on entities, variants for neighbours and compositions within a domain, so the
taxonomy decides what the synthesized tools are about. Give one in YAML, or let
``generated_taxonomy`` build one deterministically from built-in word lists.

>>> tax = generated_taxonomy(n_domains=4, seed=0)
>>> len(tax.domains), tax.domains[0].entities[0].name.startswith(tax.domains[0].name)
(4, True)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolgym.envs.canonical import seed_from
from toolgym.envs.synth.records import ItemFailure
from toolgym.envs.types import JsonDict
from toolgym.errors import ConfigError

_NAME = r"^[a-z][a-z0-9_]{0,30}$"


class Entity(BaseModel):
    """A kind of record a domain's tools work on."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    """Unique over the taxonomy, so tool names stay unique (``clinic_patient``)."""
    fields: dict[str, JsonDict] = Field(default_factory=dict)
    """Field name -> JSON Schema of the field (what create and update tools take)."""


class Domain(BaseModel):
    """A field of work with its entities."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    area: str = ""
    """The parent in the hierarchy (``health`` for ``clinic``)."""
    neighbours: list[str] = Field(default_factory=list)
    """Domains whose tools make good variants of this one's."""
    entities: list[Entity] = Field(default_factory=list)


class Taxonomy(BaseModel):
    """Domains, their hierarchy and neighbours (names unique, neighbours known)."""

    model_config = ConfigDict(extra="forbid")

    domains: list[Domain] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Taxonomy:
        names = [d.name for d in self.domains]
        if len(set(names)) < len(names):
            raise ValueError(f"domain names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
        entities = [e.name for d in self.domains for e in d.entities]
        if len(set(entities)) < len(entities):
            raise ValueError(f"entity names must be unique over all domains; repeated: {sorted({n for n in entities if entities.count(n) > 1})[:5]}")
        for d in self.domains:
            unknown = [n for n in d.neighbours if n not in names]
            if unknown:
                raise ValueError(f"domain {d.name!r} names unknown neighbour(s) {unknown}; known domains: {names[:10]}")
        return self

    def domain(self, name: str) -> Domain:
        """The domain called ``name`` (``ConfigError`` naming the known ones)."""
        for d in self.domains:
            if d.name == name:
                return d
        raise ConfigError(f"no domain {name!r} in the taxonomy; known: {[d.name for d in self.domains][:10]}")

    def with_domain(self, domain: Domain) -> Taxonomy:
        """A copy with ``domain`` added (or replacing one of the same name)."""
        rest = [d for d in self.domains if d.name != domain.name]
        return Taxonomy(domains=[*rest, domain])


def load_taxonomy(path: str | Path) -> tuple[Taxonomy, list[ItemFailure]]:
    """Read a taxonomy from YAML or JSON: the usable domains, and a failure for each malformed one.

    Raises:
        ConfigError: the file cannot be read, or no domain in it is usable.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"taxonomy {path}: cannot read it ({str(exc)[:200]})") from None
    return parse_taxonomy(raw, where=str(path))


def parse_taxonomy(raw: Any, *, where: str = "taxonomy") -> tuple[Taxonomy, list[ItemFailure]]:
    """``raw`` as a ``Taxonomy``: each malformed domain is dropped and counted, the rest kept.

    Raises:
        ConfigError: ``raw`` has no ``domains`` list, or none of its domains is usable.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("domains"), list):
        raise ConfigError(f"{where}: expected {{'domains': [...]}}; {_EXAMPLE}")
    domains: list[Domain] = []
    failures: list[ItemFailure] = []
    for i, item in enumerate(raw["domains"]):
        label = item.get("name", f"domains[{i}]") if isinstance(item, dict) else f"domains[{i}]"
        try:
            domain = Domain.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            at = ".".join(str(p) for p in first["loc"]) or "(domain)"
            failures.append(ItemFailure(stage="seeds", item=f"{where}: {label}", kind="malformed_input", message=f"field '{at}': {first['msg']}"))
            continue
        if domain.name in {d.name for d in domains}:
            failures.append(ItemFailure(stage="seeds", item=f"{where}: {label}", kind="duplicate", message="a domain of that name came earlier"))
            continue
        domains.append(domain)
    if not domains:
        raise ConfigError(f"{where}: no usable domain ({len(failures)} malformed); {_EXAMPLE}")
    known = {d.name for d in domains}
    seen: set[str] = set()
    kept = []
    for d in domains:  # neighbours of dropped domains go; entities repeated across domains are dropped
        entities = [e for e in d.entities if e.name not in seen]
        failures += [ItemFailure(stage="seeds", item=f"{where}: {e.name}", kind="duplicate", message="an entity of that name came earlier")
                     for e in d.entities if e.name in seen]
        seen.update(e.name for e in entities)
        kept.append(d.model_copy(update={"neighbours": [n for n in d.neighbours if n in known], "entities": entities}))
    return Taxonomy(domains=kept), failures


_EXAMPLE = ("a taxonomy looks like {'domains': [{'name': 'clinic', 'area': 'health', 'neighbours': [], "
            "'entities': [{'name': 'clinic_patient', 'fields': {'name': {'type': 'string'}}}]}]}")


# ---------------------------------------------------------------------- the generated taxonomy

_AREAS: dict[str, list[str]] = {
    "health": ["clinic", "pharmacy", "lab", "dental", "therapy", "vet"],
    "finance": ["bank", "payroll", "invoicing", "insurance", "tax", "budget"],
    "travel": ["airline", "hotel", "car_rental", "tour", "visa", "rail"],
    "education": ["school", "library", "course", "exam", "tutoring", "campus"],
    "retail": ["shop", "warehouse", "grocery", "fashion", "electronics", "loyalty"],
    "work": ["hr", "recruiting", "project", "helpdesk", "crm", "calendar"],
    "home": ["realty", "utility", "repair", "cleaning", "garden", "moving"],
    "media": ["music", "video", "podcast", "news", "photo", "blog"],
    "public": ["permit", "court", "census", "transit", "parking", "waste"],
    "industry": ["factory", "fleet", "energy", "farm", "mining", "lab_supply"],
}
_NOUNS = ["account", "order", "record", "booking", "ticket", "item", "member", "report", "request", "schedule",
          "document", "payment", "review", "asset", "contact", "event", "message", "plan", "shift", "batch"]
_FIELDS: dict[str, JsonDict] = {
    "title": {"type": "string", "minLength": 1, "maxLength": 80},
    "note": {"type": "string", "maxLength": 200},
    "owner": {"type": "string", "minLength": 1, "maxLength": 40},
    "email": {"type": "string", "format": "email"},
    "amount": {"type": "number", "minimum": 0, "maximum": 100000},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 500},
    "priority": {"type": "integer", "minimum": 1, "maximum": 5},
    "due_date": {"type": "string", "format": "date"},
    "status": {"type": "string", "enum": ["open", "active", "on_hold", "closed"]},
    "category": {"type": "string", "enum": ["standard", "premium", "internal"]},
    "active": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5},
    "code": {"type": "string", "minLength": 3, "maxLength": 12},
    "rating": {"type": "integer", "minimum": 1, "maximum": 10},
}


def generated_taxonomy(n_domains: int = 60, entities_per_domain: int = 6, seed: int = 0) -> Taxonomy:
    """A deterministic taxonomy of up to 60 domains in 10 areas, from built-in word lists.

    Neighbours are the other domains of the same area; each entity gets 3 to 5 fields.
    """
    pairs = [(area, d) for area, domains in _AREAS.items() for d in domains]
    order = sorted(range(len(pairs)), key=lambda i: (i % 6, i // 6))  # spread over the areas first
    chosen = [pairs[i] for i in order[: max(1, min(n_domains, len(pairs)))]]
    names = {d for _, d in chosen}
    domains = []
    for area, name in chosen:
        rng = random.Random(seed_from(seed, "taxonomy", name))
        nouns = rng.sample(_NOUNS, k=min(entities_per_domain, len(_NOUNS)))
        entities = [Entity(name=f"{name}_{noun}", fields=_fields(rng)) for noun in nouns]
        neighbours = [d for d in _AREAS[area] if d != name and d in names]
        domains.append(Domain(name=name, area=area, neighbours=neighbours, entities=entities))
    return Taxonomy(domains=domains)


def _fields(rng: random.Random) -> dict[str, JsonDict]:
    keys = rng.sample(sorted(_FIELDS), k=rng.randint(3, 5))
    return {k: dict(_FIELDS[k]) for k in keys}


FIELD_POOL = _FIELDS
"""Fields the evolution may add to a tool as a new parameter."""
