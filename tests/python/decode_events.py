"""An outside consumer of agentbank.events, written from the Avro spec alone.

Reads hex-encoded record values (one per line) from a file, checks the
single-object header (C3 01 + CRC-64-AVRO fingerprint of the published schema,
computed here independently from the spec), decodes the body with fastavro,
and prints the records as JSON lines.

usage: decode_events.py <event.avsc> <values.hex>
"""

import io
import json
import sys

import fastavro
from fastavro.schema import to_parsing_canonical_form

EMPTY = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def main() -> None:
    with open(sys.argv[1]) as f:
        raw = json.load(f)
    schema = fastavro.parse_schema(raw)
    canonical = to_parsing_canonical_form(raw)
    expected = bytes([0xC3, 0x01]) + crc64_avro(canonical.encode()).to_bytes(8, "little")
    with open(sys.argv[2]) as f:
        for line in f:
            value = bytes.fromhex(line.strip())
            if value[:10] != expected:
                raise SystemExit(f"header {value[:10].hex()} != {expected.hex()}")
            record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
            print(json.dumps(record, default=str))


if __name__ == "__main__":
    main()
