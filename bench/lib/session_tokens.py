"""Session tokens in the registry's format, for seeding sessions with SQL.

    python3 bench/lib/session_tokens.py COUNT FIRST STEP TOKENS_OUT HASHES_OUT

Writes COUNT fresh tokens (`lyst_acme_` + 44 base62 characters + the 6-character CRC-32 check of
session-registry/src/token.rs), one per line, to TOKENS_OUT, and `n,sha256-hex` lines to
HASHES_OUT with n = FIRST + i * STEP: the row a seeding statement gives token i.
"""
import hashlib
import secrets
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(n, width):
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def token(tenant):
    raw = secrets.token_bytes(32)
    body = base62(int.from_bytes(raw[:16], "big"), 22) + base62(int.from_bytes(raw[16:], "big"), 22)
    check = base62(zlib.crc32(f"{tenant}_{body}".encode()), 6)
    return f"lyst_{tenant}_{body}{check}"


def main():
    count, first, step = (int(a) for a in sys.argv[1:4])
    tokens_out, hashes_out = sys.argv[4:6]
    with open(tokens_out, "w") as tokens, open(hashes_out, "w") as hashes:
        for i in range(count):
            t = token("acme")
            tokens.write(t + "\n")
            hashes.write(f"{first + i * step},{hashlib.sha256(t.encode()).hexdigest()}\n")


if __name__ == "__main__":
    main()
