"""Independent check of agentbank's webhook signatures.

Reads [{"secret", "body", "headers"}, ...] as JSON on stdin and verifies each
delivery twice: with the revenue seed's own verifier (HMAC-SHA256 of
"{t}:{payload}" in X-MegaAgent-Signature) and with the `standardwebhooks`
library (webhook-id / webhook-timestamp / webhook-signature). Exits non-zero
and says which failed.
"""
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook


def seed_verify(payload: bytes, signature: str, secret: str) -> bool:
    # As in the seed, verbatim in substance.
    parts = signature.split(",")
    timestamp = parts[0].split("=")[1]
    sig_hex = parts[1].split("=")[1]
    message = f"{timestamp}:{payload.decode()}".encode()
    expected_sig = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig_hex, expected_sig)


def main() -> int:
    failures = []
    deliveries = json.load(sys.stdin)
    for i, d in enumerate(deliveries):
        body = d["body"].encode()
        headers = {k.lower(): v for k, v in d["headers"].items()}
        if not seed_verify(body, headers["x-megaagent-signature"], d["secret"]):
            failures.append(f"{i}: X-MegaAgent-Signature does not verify")
        try:
            # A whsec_ secret as text; any other secret as its bytes.
            secret = d["secret"]
            Webhook(secret if secret.startswith("whsec_") else secret.encode()).verify(body, headers)
        except Exception as e:  # the library raises on any mismatch
            failures.append(f"{i}: standardwebhooks: {e}")
    for f in failures:
        print(f)
    print(f"verified {len(deliveries) - len(failures)}/{len(deliveries)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
