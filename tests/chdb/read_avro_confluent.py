"""Reads a file of Confluent wire-format messages (written back to back) with ClickHouse's own
AvroConfluent input format, in process (chDB), taking each schema from the registry by its id as
ClickHouse does, and prints one JSON object per message. tests/tests/registry.rs compares them
with the events it sent: an external reader decodes the ledger's records.

usage: read_avro_confluent.py MESSAGES_FILE REGISTRY_URL
"""

import sys

import chdb


def main() -> None:
    path, registry = sys.argv[1], sys.argv[2]
    quote = lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    query = (
        "SELECT event_id, toString(event_time) AS event_time, tenant_id, request_model,"
        " input_tokens, output_tokens, provided_cost_usd"
        f" FROM file({quote(path)}, 'AvroConfluent')"
        f" SETTINGS format_avro_schema_registry_url = {quote(registry)}, session_timezone = 'UTC',"
        " output_format_json_quote_64bit_integers = 0"
    )
    print(chdb.query(query, "JSONEachRow"), end="")


if __name__ == "__main__":
    main()
