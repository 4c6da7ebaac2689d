#!/usr/bin/env python3
"""Compute the fixed vectors of test_identity.c independently of the C code.

Run: /usr/bin/python3 tests/unit/identity/vectors.py
Uses hashlib/hmac from the standard library and AES-GCM from python3-cryptography.
"""
import base64
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY = "q2Zb6v2mC1VwZ0d3Yk8rT1lZbWJ5cVd2eE5uQ2x0dUk="
USER_ID = 42
VERSION = 3
SEED = bytes(range(32))
NONCE = bytes(range(100, 112))


def le64(n):
    return struct.pack("<q", n)


def b64raw(data):
    return base64.b64encode(data).decode().rstrip("=")


root = hashlib.sha256(MASTER_KEY.encode()).digest()
enc_key = hmac.new(root, le64(USER_ID) + b"encryption", hashlib.sha256).digest()
fp_key = hmac.new(root, le64(USER_ID) + b"fingerprint", hashlib.sha256).digest()
cipher = AESGCM(enc_key).encrypt(NONCE, SEED, le64(USER_ID))

account = bytearray(hmac.new(SEED, le64(USER_ID) + le64(VERSION) + b"account", hashlib.sha256).digest()[:16])
account[6] = (account[6] & 0x0F) | 0x40
account[8] = (account[8] & 0x3F) | 0x80
h = account.hex()
uuid = f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
password = hmac.new(SEED, le64(USER_ID) + le64(VERSION) + b"password", hashlib.sha256).hexdigest()

print("key_id     ", root[:4].hex())
print("sealed     ", b64raw(NONCE) + ":" + b64raw(cipher))
print("fingerprint", hmac.new(fp_key, SEED, hashlib.sha256).hexdigest())
print("uuid       ", uuid)
print("password   ", password)

# rows written before the reference format: core/crypto under the decoded master key
legacy_key = base64.b64decode(MASTER_KEY)
legacy_aad = f"credential:{USER_ID}:{VERSION}".encode()
legacy = bytes([1]) + NONCE + AESGCM(legacy_key).encrypt(NONCE, SEED, legacy_aad)
print("legacy     ", base64.b64encode(legacy).decode())
