"""The catalog half of the oracle: reading LiteLLM-format sources and the name rules of
docs/pricing.md ("Catalog entries", "Sources and price history", "Which entry prices an event",
"The formula" step 1-2). Written from docs/pricing.md alone; see README.md.

Money is exact: catalog numbers are Decimal values of their JSON text, prices are rounded
half-to-even to 12 fractional digits, and the tier ratio of step 1.3 is an exact quotient rounded
the same way.
"""

from __future__ import annotations

import decimal
import json
import re
from decimal import Decimal
from pathlib import Path

from oracle_time import EPOCH, format_rfc3339, parse_rfc3339

CTX = decimal.getcontext()
CTX.prec = 100
CTX.rounding = decimal.ROUND_HALF_EVEN
CTX.traps[decimal.Inexact] = False
CTX.traps[decimal.Rounded] = False
PICO = Decimal(1).scaleb(-12)

F_IN = "input_cost_per_token"
F_OUT = "output_cost_per_token"
F_CR = "cache_read_input_token_cost"
F_CW = "cache_creation_input_token_cost"
F_CW1H = "cache_creation_input_token_cost_above_1hr"
F_RS = "output_cost_per_reasoning_token"
# fields with long-context and service-tier variants; F_CW1H before F_CW (longer prefix first)
VARIANT_FIELDS = (F_IN, F_OUT, F_CR, F_CW1H, F_CW)
INPUT_SIDE = (F_IN, F_CR, F_CW, F_CW1H)
LONG_RE = re.compile(
    r"^(" + "|".join(re.escape(f) for f in VARIANT_FIELDS) + r")_above_([0-9]+)k_tokens(.*)\Z",
    re.DOTALL,
)
SAMPLE_SPEC = "sample_spec"

# docs/pricing.md "Which entry prices an event": gen_ai.provider.name -> LiteLLM key prefixes
PROVIDER_PREFIXES = {
    "gcp.gemini": ("gemini",),
    "gcp.vertex_ai": ("vertex_ai",),
    "aws.bedrock": ("bedrock",),
    "azure.ai.openai": ("azure",),
    "azure.ai.inference": ("azure_ai",),
    "x_ai": ("xai",),
    "mistral_ai": ("mistral",),
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "deepseek": ("deepseek",),
    "groq": ("groq",),
    "cohere": ("cohere",),
    "perplexity": ("perplexity",),
    "ibm.watsonx.ai": ("watsonx",),
}
REGION_PREFIXES = ("us.", "eu.", "apac.", "global.")
BEDROCK_ID_RE = re.compile(r"^(global\.)?anthropic\.(.+)-v([0-9]+)(?::([0-9]+))?\Z", re.DOTALL)
DAY = r"(?:0[1-9]|[12][0-9]|3[01])"
MONTH = r"(?:0[1-9]|1[0-2])"
DATE_RE = re.compile(r"^(.+?)(?:-20[0-9]{2}" + MONTH + DAY + r"|-20[0-9]{2}-" + MONTH + "-" + DAY
                     + r"|@20[0-9]{2}" + MONTH + DAY + r")\Z", re.DOTALL)
HHMM_RE = re.compile(r"^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})\Z")


class Fatal(Exception):
    pass


class Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class JFloat(Decimal):
    """A JSON number written with a fraction or exponent (serde_json would not read it as i64)."""


def no_constants(name: str):
    raise ValueError(f"invalid JSON constant {name}")


def round_price(v: Decimal) -> Decimal:
    try:
        return v.quantize(PICO, rounding=decimal.ROUND_HALF_EVEN)
    except decimal.InvalidOperation as e:
        raise Fatal(f"price {v} out of range") from e


def is_price_name(name: str) -> bool:
    """One of the price fields of docs/pricing.md: a plain field or a variant of one."""
    if name == F_RS or name.startswith(F_RS + "_"):
        return True
    return any(name == f or name.startswith(f + "_") for f in VARIANT_FIELDS)


JSON_NUMBER_RE = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")


def price_value(v) -> Decimal | None:
    """A JSON number or a string holding one (JSON's number syntax), non-negative; else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        if not JSON_NUMBER_RE.match(v):
            return None
        v = Decimal(v)
    if not isinstance(v, Decimal) or v < 0:
        return None
    return round_price(v)


def price_fields(obj: dict) -> dict[str, Decimal]:
    out = {}
    for k, v in obj.items():
        if is_price_name(k):
            p = price_value(v)
            if p is not None:
                out[k] = p
    return out


class PriceSet:
    """The price fields of an entry after tiered/off-peak replacement: resolves the six prices."""

    __slots__ = ("prices", "xai", "long", "cache")

    def __init__(self, prices: dict[str, Decimal], xai: bool):
        self.prices = prices
        self.xai = xai
        self.long: dict[tuple[str, str], list[tuple[int, Decimal]]] = {}
        for k, p in prices.items():
            m = LONG_RE.match(k)
            if m:
                self.long.setdefault((m.group(1), m.group(3)), []).append((int(m.group(2)), p))
        for lst in self.long.values():
            lst.sort(key=lambda np: -np[0])
        self.cache: dict = {}

    def _long(self, field: str, suffix: str, i: int) -> Decimal | None:
        for n, p in self.long.get((field, suffix), ()):
            if (i >= n * 1000) if self.xai else (i > n * 1000):
                return p
        return None

    def _tier(self, field: str, suffix: str, i: int) -> Decimal | None:
        """Steps 1.1 and 1.2."""
        if field == F_RS:
            return None  # no variants
        p = self._long(field, suffix, i)
        if p is not None:
            return p
        return self.prices.get(field + suffix)

    def _plain(self, field: str, i: int) -> Decimal | None:
        """Steps 1.4 and 1.5."""
        if field != F_RS:
            p = self._long(field, "", i)
            if p is not None:
                return p
        return self.prices.get(field)

    def resolve(self, field: str, suffix: str, i: int) -> Decimal | None:
        if suffix:
            p = self._tier(field, suffix, i)
            if p is not None:
                return p
            plain = self._plain(field, i)
            side = F_IN if field in INPUT_SIDE else F_OUT
            xs = self._tier(side, suffix, i)
            xp = self._plain(side, i)
            if plain is not None and xs is not None and xp is not None and xp != 0:
                return round_price(plain * xs / xp)
        return self._plain(field, i)

    def rates(self, suffix: str, i: int) -> tuple[Decimal, ...]:
        """(in, out, cr, cw, cw1h, rs) with the fallbacks of docs/pricing.md formula step 2."""
        key = (suffix, i)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        pin = self.resolve(F_IN, suffix, i)
        pout = self.resolve(F_OUT, suffix, i)
        assert pin is not None and pout is not None
        cr = self.resolve(F_CR, suffix, i)
        cr = pin if cr is None else cr
        cw = self.resolve(F_CW, suffix, i)
        cw = pin if cw is None else cw
        cw1h = self.resolve(F_CW1H, suffix, i)
        cw1h = cw if cw1h is None else cw1h
        rs = self.resolve(F_RS, suffix, i)
        rs = pout if rs is None else rs
        out = (pin, pout, cr, cw, cw1h, rs)
        if len(self.cache) < 4096:
            self.cache[key] = out
        return out


def priceable(prices: dict) -> bool:
    return F_IN in prices and F_OUT in prices


def integral(v) -> int | None:
    if isinstance(v, bool) or not isinstance(v, Decimal) or not v.is_finite() or v < 0:
        return None
    if v != v.to_integral_value():
        return None
    return int(v)


def read_tiers(tp) -> list[tuple[int, dict]] | None | str:
    """[(hi, tier price fields)], None when the tiered_pricing is to be ignored, or a skip reason."""
    if isinstance(tp, list) and not any(isinstance(t, dict) and any(is_price_name(k) for k in t) for t in tp):
        return None
    if not isinstance(tp, list):
        return "invalid_tiered_pricing"
    tiers = []
    prev_hi = 0
    for t in tp:
        if not isinstance(t, dict):
            return "invalid_tiered_pricing"
        r = t.get("range")
        if not isinstance(r, list) or len(r) != 2:
            return "invalid_tiered_pricing"
        lo, hi = integral(r[0]), integral(r[1])
        if lo is None or hi is None or lo >= hi or lo != prev_hi:
            return "invalid_tiered_pricing"
        prev_hi = hi
        tiers.append((hi, price_fields(t)))
    return tiers


def read_off_peak(op) -> tuple[list, dict] | str:
    """(windows, off-peak price fields) or a skip reason. A window is (weekdays, [(start, end)])
    in minutes of the day, end exclusive."""
    bad = "invalid_off_peak_pricing"
    if not isinstance(op, dict):
        return bad
    ws = op.get("windows")
    if not isinstance(ws, list) or not ws:
        return bad
    windows = []
    for w in ws:
        if not isinstance(w, dict):
            return bad
        days = w.get("weekdays")
        if not isinstance(days, list) or not days:
            return bad
        wd = set()
        for d in days:
            if isinstance(d, bool) or not isinstance(d, Decimal) or isinstance(d, JFloat) or not 1 <= d <= 7:
                return bad
            wd.add(int(d))
        hours = w.get("hours_utc")
        if isinstance(hours, str):
            hours = [hours]
        if not isinstance(hours, list) or not hours:
            return bad
        ranges = []
        for h in hours:
            m = HHMM_RE.match(h) if isinstance(h, str) else None
            if not m:
                return bad
            sh, sm, eh, em = (int(m.group(i)) for i in range(1, 5))
            if sh > 23 or eh > 23 or sm > 59 or em > 59:
                return bad
            start, end = sh * 60 + sm, eh * 60 + em
            if end == 0:
                end = 1440
            if start >= end:
                return bad
            ranges.append((start, end))
        windows.append((wd, ranges))
    return windows, price_fields(op)


def in_windows(windows: list, t: tuple[int, int]) -> bool:
    secs = t[0]
    days, rem = divmod(secs, 86400)
    weekday = (days + 3) % 7 + 1  # 1970-01-01 was a Thursday (ISO 4)
    minute = rem // 60
    return any(weekday in wd and any(s <= minute < e for s, e in rs) for wd, rs in windows)


class Entry:
    """One priceable entry: the base price set, its tiers and its off-peak window."""

    __slots__ = ("key", "provider", "alias_of", "base", "tiers", "off_windows", "off_fields", "sets", "limits")

    def __init__(self, key: str, provider, base: dict, tiers, off):
        self.key = key
        self.provider = provider
        self.alias_of = None
        self.base = base
        self.tiers = tiers  # None or [(hi, tier fields)]
        self.off_windows = off[0] if off else None
        self.off_fields = off[1] if off else None
        self.sets: dict = {}
        self.limits = (None, None)  # (most input, most output tokens), twice the catalog's

    def check_limits(self, i: int, o: int):
        """implausible_tokens when the event's tokens exceed twice the entry's limits."""
        for name, n, limit in (("input_tokens", i, self.limits[0]), ("output_tokens", o, self.limits[1])):
            if limit is not None and n > limit:
                raise Reject("implausible_tokens", f"{name} {n} is above {limit}, 2 times the catalog's limit for {self.key!r}")

    def as_alias(self, key: str) -> "Entry":
        e = Entry(key, self.provider, self.base, self.tiers, None)
        e.off_windows, e.off_fields, e.sets, e.limits = self.off_windows, self.off_fields, self.sets, self.limits
        e.alias_of = self.key
        return e

    def price_set(self, i: int, t: tuple[int, int]) -> tuple[PriceSet, bool]:
        """The price set for input_tokens i at instant t, and whether off-peak prices apply."""
        tier = None
        if self.tiers is not None:
            for n, (hi, _) in enumerate(self.tiers):
                if i <= hi:
                    tier = n
                    break
            else:
                raise Reject("implausible_tokens",
                             f"input_tokens {i} above the last tiered_pricing tier (up to {self.tiers[-1][0]}) of {self.key}")
        off = self.off_windows is not None and in_windows(self.off_windows, t)
        k = (tier, off)
        ps = self.sets.get(k)
        if ps is None:
            prices = dict(self.base)
            if tier is not None:
                prices.update(self.tiers[tier][1])
            if off:
                prices.update(self.off_fields)
            ps = PriceSet(prices, self.provider == "xai")
            self.sets[k] = ps
        return ps, off


def read_entry(key: str, val) -> Entry | str:
    if not isinstance(val, dict):
        return "not_an_object"
    if key == SAMPLE_SPEC:
        return "sample_spec"
    base = price_fields(val)
    provider = val.get("litellm_provider")
    tiers = None
    if "tiered_pricing" in val:
        tiers = read_tiers(val["tiered_pricing"])
        if isinstance(tiers, str):
            return tiers
    off = None
    if "off_peak_pricing" in val:
        off = read_off_peak(val["off_peak_pricing"])
        if isinstance(off, str):
            return off
    if tiers is None:
        if not priceable(base):
            return "not_priceable"
    elif not all(priceable({**base, **tf}) for _, tf in tiers):
        return "not_priceable"
    e = Entry(key, provider if isinstance(provider, str) else None, base, tiers, off)
    e.limits = (token_limit(val.get("max_input_tokens")),
                token_limit(val.get("max_output_tokens")) or token_limit(val.get("max_tokens")))
    return e


def token_limit(v):
    """Twice a positive JSON integer limit (docs/pricing.md "Plausible token counts"), else None."""
    if isinstance(v, Decimal) and 0 < v <= 2**64 - 1:
        return 2 * int(v)
    return None


class Source:
    def __init__(self, path: str, effective_from: tuple[int, int]):
        self.name = Path(path).stem
        self.effective_from = effective_from
        self.version = f"{self.name}@{format_rfc3339(effective_from)}"
        try:
            text = Path(path).read_text(encoding="utf-8")
            raw = json.loads(text, parse_float=JFloat, parse_int=Decimal, parse_constant=no_constants)
        except (OSError, ValueError) as e:
            raise Fatal(f"cannot read catalog {path}: {e}") from e
        if not isinstance(raw, dict):
            raise Fatal(f"catalog {path} is not a JSON object")
        self.entries: dict[str, Entry] = {}
        self.skipped: dict[str, str] = {}
        aliases = {}
        for key, val in raw.items():
            if isinstance(val, dict) and "alias_of" in val and key != SAMPLE_SPEC:
                aliases[key] = val["alias_of"]
                continue
            e = read_entry(key, val)
            if isinstance(e, str):
                self.skipped[key] = e
            else:
                self.entries[key] = e
        for key, target in aliases.items():
            if not isinstance(target, str) or target not in raw:
                self.skipped[key] = "alias_target_missing"
            elif target in aliases:
                self.skipped[key] = "alias_of_alias"
            elif target not in self.entries:
                self.skipped[key] = "alias_target_not_priceable"
            else:
                self.entries[key] = self.entries[target].as_alias(key)


def parse_catalog_arg(spec: str) -> tuple[str, tuple[int, int]]:
    path, at, when = spec.rpartition("@")
    if at:
        t = parse_rfc3339(when)
        if t is not None:
            return path, t
        if not Path(spec).exists():
            raise Fatal(f"--catalog {spec}: `{when}` is not an RFC 3339 instant")
    return spec, EPOCH


def undated(m: str) -> str | None:
    mt = DATE_RE.match(m)
    return mt.group(1) if mt else None


class Catalog:
    def __init__(self, sources: list[Source], lookup_mode: str = "source-first", aliases=None):
        self.lookup_mode = lookup_mode
        self.aliases = aliases  # oracle_rules.Rules or None
        self.sources = sorted(sources, key=lambda s: s.effective_from, reverse=True)  # newest first
        seen = set()
        for s in self.sources:
            if (s.name, s.effective_from) in seen:
                raise Fatal(f"two catalog sources named {s.name} with the same effective_from")
            seen.add((s.name, s.effective_from))
        for i, a in enumerate(self.sources):
            for b in self.sources[i + 1:]:
                if a.effective_from == b.effective_from:
                    both = set(a.entries) & set(b.entries)
                    if both:
                        raise Fatal(f"sources {a.version} and {b.name} both contain {sorted(both)[0]!r}")
        # rule 2.7: name -> Bedrock ids in the order of preference, over the keys of every source
        bedrock: dict[str, list] = {}
        for s in self.sources:
            for k in s.entries:
                m = BEDROCK_ID_RE.match(k)
                if m:
                    pref = (m.group(1) is not None, int(m.group(3)), m.group(4) is not None,
                            int(m.group(4) or 0), k.encode("utf-8"))
                    bedrock.setdefault(m.group(2), {})[k] = pref
        self.bedrock = {n: sorted(ks, key=lambda k: ks[k]) for n, ks in bedrock.items()}
        self.name_cache: dict[tuple[str, str], list] = {}

    def candidates(self, m: str, p: str) -> list[tuple[str, str]]:
        """[(candidate key, step)] of docs/pricing.md "Which entry prices an event", step 2."""
        ck = (m, p)
        hit = self.name_cache.get(ck)
        if hit is not None:
            return hit
        out: list[tuple[str, str]] = []
        seen: set[str] = set()

        def add(k: str, step: str):
            if k not in seen:
                seen.add(k)
                out.append((k, step))

        prefixes = PROVIDER_PREFIXES.get(p, ())
        add(m, "2.1")
        add(f"{p}/{m}", "2.2")
        _, slash, rest = m.partition("/")
        if slash:
            add(rest, "2.3")
        if self.aliases is not None:
            for target in self.aliases.alias_targets(m, p):
                add(target, "2.4")
        for lp in prefixes:
            add(f"{lp}/{m}", "2.5")
        for r in REGION_PREFIXES:
            if m.startswith(r):
                m1 = m[len(r):]
                add(m1, "2.6")
                add(f"{p}/{m1}", "2.6")
                for lp in prefixes:
                    add(f"{lp}/{m1}", "2.6")
                break
        if p == "anthropic":
            for k in self.bedrock.get(m, ()):
                add(k, "2.7")
        u = undated(m)
        if u:
            add(u, "2.8")
            add(f"{p}/{u}", "2.8")
            for lp in prefixes:
                add(f"{lp}/{u}", "2.8")
        self.name_cache[ck] = out
        return out

    def lookup(self, name: str, provider: str, t: tuple[int, int]):
        """(key, source, entry) pricing `name` at instant t, or None (unknown model).

        source-first (the contract): the newest source in effect in which any candidate is a key,
        then the first candidate within it. key-first (kept to show the difference): the first
        candidate that is a key of any source in effect, priced by the newest such source.
        """
        cands = self.candidates(name, provider)
        live = [s for s in self.sources if s.effective_from <= t]
        if self.lookup_mode == "key-first":
            for key, _ in cands:
                for s in live:
                    e = s.entries.get(key)
                    if e is not None:
                        return key, s, e
            return None
        for s in live:
            for key, _ in cands:
                e = s.entries.get(key)
                if e is not None:
                    return key, s, e
        return None
