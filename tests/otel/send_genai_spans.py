#!/usr/bin/env python3
"""Sends OpenTelemetry GenAI spans to `ledger ingest` the way an instrumented service does: with
the OpenTelemetry Python SDK (TracerProvider, BatchSpanProcessor) and its OTLP exporters,
OTLP/HTTP protobuf and OTLP/gRPC, both gzip-compressed. Used by tests/tests/otlp.rs.

Input (stdin): a JSON array of spans, each
  {"transport": "http" | "grpc", "name": str, "attributes": {...}, "duration_ms": int,
   "resend_via": "http" | "grpc" (optional: export the finished span once more, as a retry)}
Output (stdout): one JSON line per span, in input order:
  {"trace_id": hex, "span_id": hex, "end_time_unix_nano": int}
The API key comes from the environment (LEDGER_KEY), never from the command line. With
--wrong-key-check, one more span is exported through each transport with a wrong key, and both
exports must fail. Exits non-zero, saying which export did not succeed.
"""
import argparse
import json
import os
import sys
import time

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Recording(SpanExporter):
    """Passes exports through and keeps each result and every exported span."""

    def __init__(self, inner):
        self.inner, self.results, self.spans = inner, [], {}

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        for s in spans:
            self.spans[s.get_span_context().span_id] = s
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def exporters(args, key):
    auth = {"authorization": f"Bearer {key}"}
    return {
        "http": Recording(HttpExporter(endpoint=args.http, headers=auth, compression=HttpCompression.Gzip, timeout=20)),
        "grpc": Recording(GrpcExporter(endpoint=args.grpc, headers=auth, compression=grpc.Compression.Gzip, timeout=20)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http", required=True, help="the OTLP/HTTP traces URL, e.g. http://127.0.0.1:8080/v1/traces")
    ap.add_argument("--grpc", required=True, help="the OTLP/gRPC endpoint, e.g. http://127.0.0.1:8080")
    ap.add_argument("--wrong-key-check", action="store_true")
    args = ap.parse_args()
    specs = json.load(sys.stdin)
    resource = Resource.create({"service.name": "otel-acceptance", "deployment.environment.name": "test"})
    sinks = exporters(args, os.environ["LEDGER_KEY"])
    providers = {}
    for name, sink in sinks.items():
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(sink))
        providers[name] = provider
    sent = []
    for spec in specs:
        tracer = providers[spec["transport"]].get_tracer("ledger-acceptance")
        end = time.time_ns() - 2_000_000_000
        start = end - spec.get("duration_ms", 800) * 1_000_000
        span = tracer.start_span(spec["name"], start_time=start, attributes=spec["attributes"])
        span.end(end_time=end)
        ctx = span.get_span_context()
        sent.append((ctx.span_id, {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
                                   "end_time_unix_nano": end}))
    failures = []
    for name, provider in providers.items():
        if not provider.force_flush(60_000):
            failures.append(f"{name}: the batch span processor did not flush within 60 s")
    for spec, (span_id, _) in zip(specs, sent):
        if spec.get("resend_via"):
            sinks[spec["resend_via"]].export([sinks[spec["transport"]].spans[span_id]])
    for name, sink in sinks.items():
        bad = [r for r in sink.results if r != SpanExportResult.SUCCESS]
        if bad or not sink.results:
            failures.append(f"{name}: {len(bad)} of {len(sink.results)} exports did not succeed")
    if args.wrong_key_check:
        wrong = exporters(args, "lk_000000000000_" + "0" * 64)
        probe = next(iter(sinks["http"].spans.values()))
        for name, sink in wrong.items():
            if sink.export([probe]) == SpanExportResult.SUCCESS:
                failures.append(f"{name}: an export with a wrong key succeeded")
            sink.shutdown()
    for provider in providers.values():
        provider.shutdown()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    for _, line in sent:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
