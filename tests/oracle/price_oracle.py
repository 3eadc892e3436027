#!/usr/bin/env python3
"""Independent reference implementation ("oracle") of docs/pricing.md (the pricing contract).

Written from docs/pricing.md alone (not from the Rust pricing code) so that the two can be
cross-checked: see README.md next to this file and tests/tests/price_oracle.rs.

    python3 price_oracle.py --catalog FILE[@RFC3339] [--catalog ...] < events.jsonl > out.jsonl
    python3 price_oracle.py --catalog ... --total [--distinct] < events.jsonl

Python 3.11, standard library only. Money is exact: catalog numbers are read from their text
(json parse_float/parse_int = Decimal), prices are rounded half-to-even to 12 fractional digits,
and costs are exact Decimal products and sums (never floats).
"""

from __future__ import annotations

import argparse
import decimal
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

CTX = decimal.getcontext()
CTX.prec = 100
CTX.rounding = decimal.ROUND_HALF_EVEN
CTX.traps[decimal.Inexact] = False
CTX.traps[decimal.Rounded] = False

PICO = Decimal(1).scaleb(-12)  # 0.000000000001
MONEY_LIMIT = Decimal(10) ** 26  # Decimal(38, 12): |value| < 10^26
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# The five priced fields that have long-context and service-tier variants, and the reasoning
# price (no variants).
F_IN = "input_cost_per_token"
F_OUT = "output_cost_per_token"
F_CR = "cache_read_input_token_cost"
F_CW = "cache_creation_input_token_cost"
F_CW1H = "cache_creation_input_token_cost_above_1hr"
F_RS = "output_cost_per_reasoning_token"
VARIANT_FIELDS = (F_IN, F_OUT, F_CR, F_CW1H, F_CW)  # F_CW1H before F_CW: longer prefix first
LONG_RE = re.compile(
    r"^(" + "|".join(re.escape(f) for f in VARIANT_FIELDS) + r")_above_([0-9]+)k_tokens(.*)$",
    re.DOTALL,
)

# Rust `char::is_whitespace` (Unicode White_Space), used by `str::trim` in the validator.
RUST_WS = set(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


RUST_WS_STR = "".join(sorted(RUST_WS))


def rust_blank(s: str) -> bool:
    return not s.strip(RUST_WS_STR)


class Fatal(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Time: RFC 3339 to (epoch seconds, nanoseconds), exact to the nanosecond (datetime is only
# microsecond precise, and an event 1 ns before a source's effective_from must not use it).

RFC3339_RE = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def parse_rfc3339(s: str) -> tuple[int, int] | None:
    """(seconds since the epoch, nanoseconds) in UTC, or None if `s` is not RFC 3339."""
    m = RFC3339_RE.match(s)
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo) and hh <= 23 and mi <= 59 and ss <= 59):
        return None
    frac = m.group(7)
    nanos = int((frac[1:] + "000000000")[:9]) if frac else 0
    off = m.group(8)
    offset = 0
    if off not in ("Z", "z"):
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (1 if off[0] == "+" else -1)
    secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    return secs, nanos


def format_rfc3339(t: tuple[int, int]) -> str:
    """UTC, `Z`, fraction only when non-zero, in 3, 6 or 9 digits (chrono's SecondsFormat::AutoSi)."""
    secs, nanos = t
    days, rem = divmod(secs, 86400)
    y, m, d = civil_from_days(days)
    out = f"{y:04d}-{m:02d}-{d:02d}T{rem // 3600:02d}:{rem % 3600 // 60:02d}:{rem % 60:02d}"
    if nanos:
        if nanos % 1_000_000 == 0:
            out += f".{nanos // 1_000_000:03d}"
        elif nanos % 1000 == 0:
            out += f".{nanos // 1000:06d}"
        else:
            out += f".{nanos:09d}"
    return out + "Z"


EPOCH = (0, 0)


# ---------------------------------------------------------------------------------------------
# Money


def money_str(v: Decimal) -> str:
    q = v.quantize(PICO)
    if q == 0:
        q = q.copy_abs()
    return format(q, "f")


def round_price(v: Decimal) -> Decimal:
    try:
        return v.quantize(PICO, rounding=decimal.ROUND_HALF_EVEN)
    except decimal.InvalidOperation as e:
        raise Fatal(f"price {v} out of range") from e


# ---------------------------------------------------------------------------------------------
# Catalog


class JFloat(Decimal):
    """A JSON number written with a fraction or exponent (serde_json would not read it as i64)."""


def _no_constants(name: str):
    raise ValueError(f"invalid JSON constant {name}")


class Entry:
    """One priceable catalog entry: its rounded per-token prices and their variant tables."""

    __slots__ = ("prices", "long", "cache")

    def __init__(self, raw: dict):
        # every numeric field, price rounded half-to-even to 12 fractional digits
        self.prices: dict[str, Decimal] = {}
        # (field, suffix) -> [(N, price)] sorted by N descending
        self.long: dict[tuple[str, str], list[tuple[int, Decimal]]] = {}
        for k, v in raw.items():
            if not isinstance(v, Decimal):
                continue
            if not (k.startswith(F_IN) or k.startswith(F_OUT) or k.startswith(F_CR)
                    or k.startswith(F_CW) or k == F_RS):
                continue  # fields the catalog does not use are ignored
            p = round_price(v)
            self.prices[k] = p
            m = LONG_RE.match(k)
            if m:
                self.long.setdefault((m.group(1), m.group(3)), []).append((int(m.group(2)), p))
        for lst in self.long.values():
            lst.sort(key=lambda np: -np[0])
        self.cache: dict = {}

    def _long(self, field: str, suffix: str, input_tokens: int) -> Decimal | None:
        for n, p in self.long.get((field, suffix), ()):
            if input_tokens > n * 1000:
                return p
        return None

    def resolve(self, field: str, suffix: str, input_tokens: int) -> Decimal | None:
        """docs/pricing.md 'Resolving a price', steps 1, 2, 4 and 5."""
        if suffix:
            p = self._long(field, suffix, input_tokens)
            if p is not None:
                return p
            p = self.prices.get(field + suffix)
            if p is not None:
                return p
        p = self._long(field, "", input_tokens)
        if p is not None:
            return p
        return self.prices.get(field)

    def rates(self, suffix: str, input_tokens: int) -> tuple[Decimal, ...]:
        """(in, out, cr, cw, cw1h, rs) with the fallbacks of docs/pricing.md 'Prices with fallbacks'."""
        pin = self.resolve(F_IN, suffix, input_tokens)
        pout = self.resolve(F_OUT, suffix, input_tokens)
        assert pin is not None and pout is not None  # priceable entries have both plain prices
        cr = self.resolve(F_CR, suffix, input_tokens)
        cr = pin if cr is None else cr
        cw = self.resolve(F_CW, suffix, input_tokens)
        cw = pin if cw is None else cw
        cw1h = self.resolve(F_CW1H, suffix, input_tokens)
        cw1h = cw if cw1h is None else cw1h
        rs = self.prices.get(F_RS)
        rs = pout if rs is None else rs
        return pin, pout, cr, cw, cw1h, rs


class Source:
    def __init__(self, path: str, effective_from: tuple[int, int]):
        self.name = Path(path).stem
        self.effective_from = effective_from
        self.version = f"{self.name}@{format_rfc3339(effective_from)}"
        try:
            text = Path(path).read_text(encoding="utf-8")
            raw = json.loads(text, parse_float=JFloat, parse_int=Decimal, parse_constant=_no_constants)
        except (OSError, ValueError) as e:
            raise Fatal(f"cannot read catalog {path}: {e}") from e
        if not isinstance(raw, dict):
            raise Fatal(f"catalog {path} is not a JSON object")
        self.entries: dict[str, Entry] = {}
        self.skipped: dict[str, str] = {}
        for key, val in raw.items():
            if not isinstance(val, dict):
                self.skipped[key] = "not an object"
                continue
            if not isinstance(val.get(F_IN), Decimal) or not isinstance(val.get(F_OUT), Decimal):
                self.skipped[key] = "no input_cost_per_token and output_cost_per_token"
                continue
            self.entries[key] = Entry(val)


def parse_catalog_arg(spec: str) -> tuple[str, tuple[int, int]]:
    path, at, when = spec.rpartition("@")
    if at:
        t = parse_rfc3339(when)
        if t is not None:
            return path, t
        if not Path(spec).exists():
            raise Fatal(f"--catalog {spec}: `{when}` is not an RFC 3339 instant")
    return spec, EPOCH


class Catalog:
    def __init__(self, sources: list[Source], lookup_mode: str = "source-first"):
        self.lookup_mode = lookup_mode
        # newest first
        self.sources = sorted(sources, key=lambda s: s.effective_from, reverse=True)
        seen = {}
        for s in self.sources:
            if (s.name, s.effective_from) in seen:
                raise Fatal(f"two catalog sources named {s.name} with the same effective_from")
            seen[(s.name, s.effective_from)] = s
        for i, a in enumerate(self.sources):
            for b in self.sources[i + 1:]:
                if a.effective_from == b.effective_from:
                    both = set(a.entries) & set(b.entries)
                    if both:
                        raise Fatal(f"sources {a.version} and {b.name} both contain {sorted(both)[0]!r}")
        # key -> [(effective_from, source, entry)] newest first
        self.by_key: dict[str, list[tuple[tuple[int, int], Source, Entry]]] = {}
        for s in self.sources:
            for k, e in s.entries.items():
                self.by_key.setdefault(k, []).append((s.effective_from, s, e))
        self.name_cache: dict[tuple[str, str], list] = {}

    def _candidates(self, name: str, provider: str) -> list:
        """[(key, versions)] for m, p/m and (when m is x/rest) rest, in that order, keys that exist."""
        ck = (name, provider)
        hit = self.name_cache.get(ck)
        if hit is None:
            cands = [name, f"{provider}/{name}"]
            x, slash, rest = name.partition("/")
            if slash:
                cands.append(rest)
            hit = [(c, self.by_key[c]) for c in cands if c in self.by_key]
            self.name_cache[ck] = hit
        return hit

    def lookup(self, name: str, provider: str, t: tuple[int, int]):
        """(key, source, entry) pricing `name` at instant t, or None (unknown model).

        source-first (default, the reading the project adopted): the newest source in effect in
        which any candidate is a key wins, and the first candidate within that source.
        key-first: the first candidate name (m, p/m, rest) that is an entry key of any
        source in effect at t wins, and the newest source in effect that contains that key
        prices it, so an exact match in an older source beats a fuzzier one in a newer source.
        """
        cands = self._candidates(name, provider)
        if self.lookup_mode == "key-first":
            for key, versions in cands:
                for eff, src, entry in versions:
                    if eff <= t:
                        return key, src, entry
            return None
        best = None
        for key, versions in cands:
            for eff, src, entry in versions:
                if eff <= t:
                    if best is None or eff > best[0]:
                        best = (eff, key, src, entry)
                    break
        return None if best is None else best[1:]


# ---------------------------------------------------------------------------------------------
# Events

REQUIRED_STR = ("event_id", "tenant_id", "provider", "request_model")
OPTIONAL_STR = ("team", "project", "user_id", "api_key_id", "feature", "environment",
                "response_model", "routed_from_model", "service_tier", "response_id", "trace_id")
DEFAULT_STR = ("operation", "status")
TOKEN_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                "cache_creation_1h_input_tokens", "output_tokens", "reasoning_output_tokens")
KNOWN_FIELDS = set(REQUIRED_STR + OPTIONAL_STR + DEFAULT_STR + TOKEN_FIELDS) | {
    "event_time", "tags", "provided_cost_usd", "latency_ms"}

MONEY_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class DuplicateField(ValueError):
    pass


def _pairs_hook(pairs):
    d = {}
    for k, v in pairs:
        if k in d and k in KNOWN_FIELDS:
            # serde's derived Deserialize rejects a repeated struct field; for maps (tags) the
            # last one wins, like here.
            d.setdefault("\0dups", []).append(k)
        d[k] = v
    return d


def is_int(v) -> bool:
    return isinstance(v, Decimal) and not isinstance(v, JFloat)


EVENT_DECODER = json.JSONDecoder(parse_float=JFloat, parse_int=Decimal, parse_constant=_no_constants,
                                 object_pairs_hook=_pairs_hook)
LOOSE_DECODER = json.JSONDecoder(parse_float=JFloat, parse_int=Decimal, parse_constant=_no_constants)


def decode(text: str) -> dict:
    """Mirror of serde_json -> UsageEvent: the errors it raises become decode_error."""
    try:
        obj = EVENT_DECODER.decode(text)
    except (ValueError, RecursionError) as e:
        raise Reject("decode_error", f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise Reject("decode_error", "not a JSON object")
    dups = obj.pop("\0dups", None)
    if dups:
        raise Reject("decode_error", f"duplicate field `{dups[0]}`")
    for f in REQUIRED_STR:
        if f not in obj:
            raise Reject("decode_error", f"missing field `{f}`")
        if not isinstance(obj[f], str):
            raise Reject("decode_error", f"field `{f}`: expected a string")
    if "event_time" not in obj:
        raise Reject("decode_error", "missing field `event_time`")
    et = obj["event_time"]
    t = parse_rfc3339(et) if isinstance(et, str) else None
    if t is None:
        raise Reject("decode_error", "field `event_time`: expected an RFC 3339 date-time")
    obj["\0t"] = t
    for f in OPTIONAL_STR:
        v = obj.get(f)
        if v is not None and not isinstance(v, str):
            raise Reject("decode_error", f"field `{f}`: expected a string or null")
    for f in DEFAULT_STR:
        if f in obj and not isinstance(obj[f], str):
            raise Reject("decode_error", f"field `{f}`: expected a string")
    for f in TOKEN_FIELDS:
        if f in obj:
            v = obj[f]
            if not is_int(v) or not (I64_MIN <= v <= I64_MAX):
                raise Reject("decode_error", f"field `{f}`: expected an i64")
            obj[f] = int(v)
        else:
            obj[f] = 0
    v = obj.get("latency_ms")
    if v is not None and (not is_int(v) or not (I64_MIN <= v <= I64_MAX)):
        raise Reject("decode_error", "field `latency_ms`: expected an i64 or null")
    if "tags" in obj:
        tags = obj["tags"]
        if not isinstance(tags, dict) or not all(isinstance(x, str) for x in tags.values()):
            raise Reject("decode_error", "field `tags`: expected a map of strings")
    v = obj.get("provided_cost_usd")
    if v is not None:
        if not isinstance(v, str) or not MONEY_RE.match(v):
            raise Reject("decode_error", "field `provided_cost_usd`: expected a decimal string")
        d = Decimal(v)
        if d != d.quantize(PICO) or abs(d) >= Decimal(2) ** 127 * PICO:
            raise Reject("decode_error", "field `provided_cost_usd`: not exact in pico-dollars")
    return obj


def validate(ev: dict) -> None:
    for f in REQUIRED_STR:
        if rust_blank(ev[f]):
            raise Reject("missing_field", f"field `{f}` is empty")
    for f in TOKEN_FIELDS:
        if ev[f] < 0:
            raise Reject("negative_tokens", f"field `{f}` is negative ({ev[f]})")
    cached = ev["cache_read_input_tokens"] + ev["cache_creation_input_tokens"] + ev["cache_creation_1h_input_tokens"]
    if cached > ev["input_tokens"]:
        raise Reject("inconsistent_tokens", f"cache parts ({cached}) exceed input_tokens ({ev['input_tokens']})")
    if ev["reasoning_output_tokens"] > ev["output_tokens"]:
        raise Reject("inconsistent_tokens", "reasoning_output_tokens exceed output_tokens")


def tier_suffix(tier: str | None) -> str:
    if tier is None or tier == "default":
        return ""
    return "_batches" if tier == "batch" else "_" + tier


def cost_terms(entry: Entry, suffix: str, ev: dict) -> list[Decimal]:
    i = ev["input_tokens"]
    cr, cw, cw1h = ev["cache_read_input_tokens"], ev["cache_creation_input_tokens"], ev["cache_creation_1h_input_tokens"]
    o, r = ev["output_tokens"], ev["reasoning_output_tokens"]
    key = (suffix, i)
    rates = entry.cache.get(key)
    if rates is None:
        rates = entry.rates(suffix, i)
        if len(entry.cache) < 4096:
            entry.cache[key] = rates
    pin, pout, pcr, pcw, pcw1h, prs = rates
    uncached = i - cr - cw - cw1h
    return [uncached * pin, cr * pcr, cw * pcw, cw1h * pcw1h, (o - r) * pout, r * prs]


def in_range(v: Decimal) -> bool:
    return abs(v) < MONEY_LIMIT


TERM_NAMES = ("input_cost_usd", "cache_read_cost_usd", "cache_write_cost_usd",
              "cache_write_1h_cost_usd", "output_cost_usd", "reasoning_cost_usd")


def price_event(cat: Catalog, ev: dict) -> dict:
    t = ev["\0t"]
    provider = ev["provider"]
    found = None
    resp = ev.get("response_model")
    if resp:
        found = cat.lookup(resp, provider, t)
    if found is None:
        found = cat.lookup(ev["request_model"], provider, t)
    if found is None:
        names = f"`{resp}` / `{ev['request_model']}`" if resp else f"`{ev['request_model']}`"
        raise Reject("unknown_model", f"no catalog entry prices {names} at {format_rfc3339(t)}")
    key, src, entry = found
    suffix = tier_suffix(ev.get("service_tier"))
    terms = cost_terms(entry, suffix, ev)
    cost = sum(terms, Decimal(0))
    if not all(in_range(x) for x in terms) or not in_range(cost):
        raise Reject("overflow", f"cost of `{key}` exceeds Decimal(38, 12)")
    out = {"model": key, "price_version": src.version}
    for n, v in zip(TERM_NAMES, terms):
        out[n] = money_str(v)
    out["cost_usd"] = money_str(cost)
    out["routed_from_model"] = None
    out["routed_from_cost_usd"] = None
    out["savings_usd"] = None
    routed = ev.get("routed_from_model")
    if routed:
        rf = cat.lookup(routed, provider, t)
        if rf is not None:
            rterms = cost_terms(rf[2], suffix, ev)
            rcost = sum(rterms, Decimal(0))
            savings = rcost - cost
            if all(in_range(x) for x in rterms) and in_range(rcost) and in_range(savings):
                out["routed_from_model"] = rf[0]
                out["routed_from_cost_usd"] = money_str(rcost)
                out["savings_usd"] = money_str(savings)
    out["\0cost"] = cost
    return out


def best_effort_event_id(text: str):
    try:
        obj = LOOSE_DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
        return obj["event_id"]
    return None


def process_line(cat: Catalog, raw: bytes):
    """(event_id or None, result dict without `line`, cost or None, reason or None, decoded?)"""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, {"event_id": None, "error": {"reason": "decode_error", "detail": "invalid UTF-8"}}, None, "decode_error", False
    try:
        ev = decode(text)
    except Reject as r:
        eid = best_effort_event_id(text)
        return eid, {"event_id": eid, "error": {"reason": r.reason, "detail": r.detail}}, None, r.reason, False
    eid = ev["event_id"]
    try:
        validate(ev)
        res = price_event(cat, ev)
    except Reject as r:
        return eid, {"event_id": eid, "error": {"reason": r.reason, "detail": r.detail}}, None, r.reason, True
    cost = res.pop("\0cost")
    return eid, {"event_id": eid, **res}, cost, None, True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Reference pricer (oracle) for docs/pricing.md.")
    ap.add_argument("--catalog", action="append", required=True, metavar="FILE[@RFC3339]",
                    help="a catalog source; repeat for a price history (default effective_from 1970-01-01T00:00:00Z)")
    ap.add_argument("--total", action="store_true",
                    help='print only {"priced": n, "failed": {reason: count}, "total_cost_usd": "..."}')
    ap.add_argument("--distinct", action="store_true",
                    help="count each event_id once (first occurrence wins); lines that do not decode are never deduplicated")
    ap.add_argument("--lookup", choices=("key-first", "source-first"), default="source-first",
                    help="how name lookup and price history combine (docs/pricing.md now says source-first; see README.md)")
    args = ap.parse_args(argv)
    try:
        cat = Catalog([Source(*parse_catalog_arg(s)) for s in args.catalog], args.lookup)
    except Fatal as e:
        print(f"price_oracle: {e}", file=sys.stderr)
        return 2

    data = sys.stdin.buffer.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = sys.stdout
    seen: set[str] = set()
    priced = 0
    failed: dict[str, int] = {}
    total = Decimal(0)
    buf = []
    for n, raw in enumerate(lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            if rust_blank(raw.decode("utf-8")):
                continue
        except UnicodeDecodeError:
            pass
        eid, res, cost, reason, decoded = process_line(cat, raw)
        if args.distinct and decoded:
            if eid in seen:
                continue
            seen.add(eid)
        if args.total:
            if reason is None:
                priced += 1
                total += cost
            else:
                failed[reason] = failed.get(reason, 0) + 1
        else:
            buf.append(json.dumps({"line": n, **res}, ensure_ascii=True))
            if len(buf) >= 4096:
                out.write("\n".join(buf) + "\n")
                buf.clear()
    if args.total:
        out.write(json.dumps({"priced": priced, "failed": dict(sorted(failed.items())),
                              "total_cost_usd": money_str(total)}) + "\n")
    elif buf:
        out.write("\n".join(buf) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
