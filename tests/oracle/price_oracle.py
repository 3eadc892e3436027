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

CTX = decimal.getcontext()
CTX.prec = 100
CTX.rounding = decimal.ROUND_HALF_EVEN
CTX.traps[decimal.Inexact] = False
CTX.traps[decimal.Rounded] = False

from oracle_catalog import (  # noqa: E402  (after the decimal context is set)
    PICO, Catalog, Fatal, JFloat, Reject, Source, no_constants, parse_catalog_arg,
)
from oracle_rules import Rules  # noqa: E402
from oracle_time import format_rfc3339, parse_rfc3339  # noqa: E402

MONEY_LIMIT = Decimal(10) ** 26  # Decimal(38, 12): |value| < 10^26
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# Rust `char::is_whitespace` (Unicode White_Space), used by `str::trim` in the validator.
RUST_WS = set(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


RUST_WS_STR = "".join(sorted(RUST_WS))


def rust_blank(s: str) -> bool:
    return not s.strip(RUST_WS_STR)


# ---------------------------------------------------------------------------------------------
# Money


def money_str(v: Decimal) -> str:
    q = v.quantize(PICO)
    if q == 0:
        q = q.copy_abs()
    return format(q, "f")


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


EVENT_DECODER = json.JSONDecoder(parse_float=JFloat, parse_int=Decimal, parse_constant=no_constants,
                                 object_pairs_hook=_pairs_hook)
LOOSE_DECODER = json.JSONDecoder(parse_float=JFloat, parse_int=Decimal, parse_constant=no_constants)


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


def in_range(v: Decimal) -> bool:
    return abs(v) < MONEY_LIMIT


TERM_NAMES = ("input_cost_usd", "cache_read_cost_usd", "cache_write_cost_usd",
              "cache_write_1h_cost_usd", "output_cost_usd", "reasoning_cost_usd")


def price_names(cat: Catalog, ev: dict, names: list[str], suffix: str):
    """(model, price_version, alias_of, terms, cost) of the first of `names` that prices, by
    docs/pricing.md: the name rules over the price history, then the local overrides."""
    t, provider, tenant = ev["\0t"], ev["provider"], ev["tenant_id"]
    i = ev["input_tokens"]
    names = [n for n in names if n]
    found = None
    for n in names:
        found = cat.lookup(n, provider, t)
        if found is not None:
            break
    ov = None
    model = found[0] if found is not None else None
    if cat.aliases is not None:
        if found is not None:
            ov = cat.aliases.override_for(tenant, provider, model, t)
        else:
            for n in names:
                ov = cat.aliases.override_for(tenant, provider, n, t)
                if ov is not None:
                    model = n
                    break
    if ov is not None and ov.prices is not None:
        rates = ov.price_set.rates(suffix, i)
        version, alias_of = ov.version, None
    elif found is None:
        raise Reject("unknown_model", f"no catalog entry prices {' / '.join(names)} at {format_rfc3339(t)}")
    else:
        _, src, entry = found
        entry.check_limits(i, ev["output_tokens"])
        ps, off = entry.price_set(i, t)
        rates = ps.rates(suffix, i)
        alias_of = entry.alias_of
        version = src.version + (f";alias_of={alias_of}" if alias_of else "") + (";off_peak" if off else "")
        if ov is not None:
            rates = ov.scale(rates)
            version += ov.version
    cr, cw, cw1h = ev["cache_read_input_tokens"], ev["cache_creation_input_tokens"], ev["cache_creation_1h_input_tokens"]
    o, r = ev["output_tokens"], ev["reasoning_output_tokens"]
    pin, pout, pcr, pcw, pcw1h, prs = rates
    terms = [(i - cr - cw - cw1h) * pin, cr * pcr, cw * pcw, cw1h * pcw1h, (o - r) * pout, r * prs]
    cost = sum(terms, Decimal(0))
    if not all(in_range(x) for x in terms) or not in_range(cost):
        raise Reject("overflow", f"cost of `{model}` exceeds Decimal(38, 12)")
    return model, version, alias_of, terms, cost


def price_event(cat: Catalog, ev: dict) -> dict:
    suffix = tier_suffix(ev.get("service_tier"))
    model, version, alias_of, terms, cost = price_names(cat, ev, [ev.get("response_model"), ev["request_model"]], suffix)
    out = {"model": model, "price_version": version, "alias_of": alias_of}
    for n, v in zip(TERM_NAMES, terms):
        out[n] = money_str(v)
    out["cost_usd"] = money_str(cost)
    out["routed_from_model"] = None
    out["routed_from_cost_usd"] = None
    out["savings_usd"] = None
    routed = ev.get("routed_from_model")
    if routed:
        try:
            rmodel, _, _, _, rcost = price_names(cat, ev, [routed], suffix)
        except Reject:
            rmodel = None
        if rmodel is not None:
            savings = rcost - cost
            if in_range(savings):
                out["routed_from_model"] = rmodel
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
    ap.add_argument("--rules", metavar="FILE", help="local pricing rules (aliases and overrides, TOML)")
    args = ap.parse_args(argv)
    try:
        rules = Rules(args.rules) if args.rules else None
        cat = Catalog([Source(*parse_catalog_arg(s)) for s in args.catalog], args.lookup, rules)
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
