"""Client side of the signed third-party API (docs/signed-api.md), for the tests.

Standard library only: HMAC-SHA256 from hmac/hashlib, and AES-256-GCM from
the system libcrypto (the one znp links) through ctypes.

    headers, body = signed_request(api_key, secret, "PATCH", "/api/v1/user/account/profile",
                                   b'{"display_name":"Ada"}')
    conn.request("PATCH", "/api/v1/user/account/profile", body=body, headers=headers)
"""

import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import os
import time

IV_LEN = 12
TAG_LEN = 16


def canonical(method, path, query, timestamp, nonce, body):
    """The canonical string: six lines joined by a newline, the body as base64."""
    return "\n".join([method.upper(), path, query or "", str(timestamp), nonce,
                      base64.b64encode(body or b"").decode("ascii")])


def sign(secret, method, path, query, timestamp, nonce, body):
    """base64(HMAC-SHA256(secret, canonical string))."""
    text = canonical(method, path, query, timestamp, nonce, body).encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), text, hashlib.sha256).digest()).decode("ascii")


def _libcrypto():
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise OSError("libcrypto not found")
    lib = ctypes.CDLL(name)
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    lib.EVP_aes_256_gcm.restype = ctypes.c_void_p
    lib.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                       ctypes.c_char_p]
    lib.EVP_EncryptUpdate.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                      ctypes.c_char_p, ctypes.c_int]
    lib.EVP_EncryptFinal_ex.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    lib.EVP_CIPHER_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    return lib


EVP_CTRL_GCM_GET_TAG = 0x10


def encrypt(secret, iv, plaintext):
    """AES-256-GCM under SHA-256(secret): ciphertext followed by the 16-byte tag."""
    lib = _libcrypto()
    key = hashlib.sha256(secret.encode("utf-8")).digest()
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise OSError("EVP_CIPHER_CTX_new failed")
    try:
        out = ctypes.create_string_buffer(len(plaintext) + 16)
        tag = ctypes.create_string_buffer(TAG_LEN)
        n = ctypes.c_int(0)
        tail = ctypes.c_int(0)
        if lib.EVP_EncryptInit_ex(ctx, lib.EVP_aes_256_gcm(), None, key, iv) != 1:
            raise OSError("EVP_EncryptInit_ex failed")
        if plaintext and lib.EVP_EncryptUpdate(ctx, out, ctypes.byref(n), plaintext, len(plaintext)) != 1:
            raise OSError("EVP_EncryptUpdate failed")
        if lib.EVP_EncryptFinal_ex(ctx, ctypes.cast(ctypes.addressof(out) + n.value, ctypes.c_char_p),
                                   ctypes.byref(tail)) != 1:
            raise OSError("EVP_EncryptFinal_ex failed")
        if lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1:
            raise OSError("EVP_CIPHER_CTX_ctrl failed")
        return out.raw[:n.value + tail.value] + tag.raw
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)


def new_nonce():
    """32 hex digits: random, and within the 16..128 characters the server accepts."""
    return os.urandom(16).hex()


def signed_request(api_key, secret, method, target, body=b"", timestamp=None, nonce=None, encrypted=False,
                   iv=None):
    """Headers and body bytes for one signed request.

    target: path with an optional "?query" exactly as it is sent.
    encrypted: encrypt `body` first (a random IV unless `iv` is given); the
    signature covers the ciphertext.
    """
    path, _, query = target.partition("?")
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or new_nonce()
    headers = {"X-ZNP-API-Key": api_key, "X-ZNP-Timestamp": str(timestamp), "X-ZNP-Nonce": nonce}
    if encrypted:
        iv = iv if iv is not None else os.urandom(IV_LEN)
        body = encrypt(secret, iv, body)
        headers["X-ZNP-Encrypted"] = "1"
        headers["X-ZNP-IV"] = base64.b64encode(iv).decode("ascii")
        headers["Content-Type"] = "application/octet-stream"
    elif body:
        headers["Content-Type"] = "application/json"
    headers["X-ZNP-Signature"] = sign(secret, method, path, query, timestamp, nonce, body)
    return headers, body
