"""Local pricing rules of docs/pricing.md ("Local pricing rules: aliases and price overrides"):
the TOML file of aliases and overrides, read with the standard library's tomllib. Written from
docs/pricing.md alone; see README.md.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal

from oracle_catalog import F_IN, F_OUT, Fatal, PriceSet, is_price_name, priceable, round_price
from oracle_time import format_rfc3339, parse_rfc3339

ID_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")
DECIMAL_RE = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
TOP_KEYS = {"aliases", "aliases_by_provider", "overrides"}
OVERRIDE_KEYS = {"id", "tenant", "provider", "model", "effective_from", "effective_to", "multiplier", "prices"}
FAR_FUTURE = (2**62, 0)


class TomlFloat(str):
    """A TOML float, kept as text so that it can be refused by name."""


def number(v, what: str) -> Decimal:
    """A decimal number written as a string, or a TOML integer; never a float."""
    if isinstance(v, TomlFloat):
        raise Fatal(f"{what}: write the number as a string (\"{v}\") so that it stays exact")
    if isinstance(v, bool):
        raise Fatal(f"{what}: not a number")
    if isinstance(v, int):
        d = Decimal(v)
    elif isinstance(v, str) and DECIMAL_RE.match(v):
        d = Decimal(v)
    else:
        raise Fatal(f"{what}: not a decimal number")
    if d < 0:
        raise Fatal(f"{what}: negative")
    return d


def instant(v, what: str) -> tuple[int, int]:
    t = parse_rfc3339(v) if isinstance(v, str) else None
    if t is None:
        raise Fatal(f"{what}: not an RFC 3339 instant string")
    return t


class Override:
    __slots__ = ("id", "tenant", "provider", "model", "start", "end", "multiplier", "prices", "price_set", "version",
                 "rank")

    def __init__(self, raw: dict, n: int):
        where = f"overrides[{n}]"
        if not isinstance(raw, dict):
            raise Fatal(f"{where}: not a table")
        unknown = set(raw) - OVERRIDE_KEYS
        if unknown:
            raise Fatal(f"{where}: unknown key {sorted(unknown)[0]!r}")
        self.id = raw.get("id")
        if not isinstance(self.id, str) or not ID_RE.match(self.id):
            raise Fatal(f"{where}: id must be letters, digits, '.', '_' or '-'")
        for f in ("tenant", "provider", "model"):
            if f in raw and not isinstance(raw[f], str):
                raise Fatal(f"{where}.{f}: not a string")
        self.tenant, self.provider, self.model = raw.get("tenant"), raw.get("provider"), raw.get("model")
        if "effective_from" not in raw:
            raise Fatal(f"{where}: effective_from is required")
        self.start = instant(raw["effective_from"], f"{where}.effective_from")
        self.end = instant(raw["effective_to"], f"{where}.effective_to") if "effective_to" in raw else FAR_FUTURE
        if self.end <= self.start:
            raise Fatal(f"{where}: effective_to must be after effective_from")
        if ("multiplier" in raw) == ("prices" in raw):
            raise Fatal(f"{where}: give exactly one of multiplier and prices")
        self.multiplier = None
        self.prices = None
        self.price_set = None
        tag = f"{self.id}@{format_rfc3339(self.start)}"
        if "multiplier" in raw:
            self.multiplier = number(raw["multiplier"], f"{where}.multiplier")
            self.version = f";override={tag}"
        else:
            table = raw["prices"]
            if not isinstance(table, dict):
                raise Fatal(f"{where}.prices: not a table")
            self.prices = {}
            for k, v in table.items():
                if not is_price_name(k):
                    raise Fatal(f"{where}.prices: {k!r} is not a price field")
                self.prices[k] = round_price(number(v, f"{where}.prices.{k}"))
            if not priceable(self.prices):
                raise Fatal(f"{where}.prices: needs {F_IN} and {F_OUT}")
            if self.model is None:
                raise Fatal(f"{where}: prices need a model")
            self.price_set = PriceSet(self.prices, False)
            self.version = f"override={tag}"
        self.rank = (self.tenant is not None, self.model is not None, self.provider is not None)

    def scope(self):
        return (self.tenant, self.model, self.provider)

    def applies(self, tenant: str, provider: str, model: str, t: tuple[int, int]) -> bool:
        return (self.start <= t < self.end
                and (self.tenant is None or self.tenant == tenant)
                and (self.provider is None or self.provider == provider)
                and (self.model is None or self.model == model))

    def scale(self, rates: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        return tuple(round_price(r * self.multiplier) for r in rates)


class Rules:
    def __init__(self, path: str):
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f, parse_float=TomlFloat)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise Fatal(f"cannot read pricing rules {path}: {e}") from e
        unknown = set(raw) - TOP_KEYS
        if unknown:
            raise Fatal(f"{path}: unknown key {sorted(unknown)[0]!r}")
        self.aliases: dict[str, str] = {}
        self.by_provider: dict[str, dict[str, str]] = {}
        for name, target in raw.get("aliases", {}).items():
            if not isinstance(target, str):
                raise Fatal(f"aliases.{name}: the target must be a string")
            self.aliases[name] = target
        for provider, table in raw.get("aliases_by_provider", {}).items():
            if not isinstance(table, dict):
                raise Fatal(f"aliases_by_provider.{provider}: not a table")
            for name, target in table.items():
                if not isinstance(target, str):
                    raise Fatal(f"aliases_by_provider.{provider}.{name}: the target must be a string")
            self.by_provider[provider] = dict(table)
        overrides = raw.get("overrides", [])
        if not isinstance(overrides, list):
            raise Fatal("overrides: write [[overrides]] tables")
        self.overrides = [Override(o, n) for n, o in enumerate(overrides)]
        ids = set()
        for o in self.overrides:
            if o.id in ids:
                raise Fatal(f"override id {o.id!r} is given twice")
            ids.add(o.id)
        for i, a in enumerate(self.overrides):
            for b in self.overrides[i + 1:]:
                if a.scope() == b.scope() and a.start < b.end and b.start < a.end:
                    raise Fatal(f"overrides {a.id!r} and {b.id!r} have the same scope and overlapping times")

    def alias_targets(self, m: str, p: str) -> list[str]:
        out = []
        t = self.by_provider.get(p, {}).get(m)
        if t is not None:
            out.append(t)
        t = self.aliases.get(m)
        if t is not None:
            out.append(t)
        return out

    def override_for(self, tenant: str, provider: str, model: str, t: tuple[int, int]):
        best = None
        for o in self.overrides:
            if o.applies(tenant, provider, model, t) and (best is None or o.rank > best.rank):
                best = o
        return best

