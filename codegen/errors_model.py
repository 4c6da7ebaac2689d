"""spec/errors.yaml: the error catalogue."""

import re

ERRORS_FILE = "spec/errors.yaml"

# google.rpc.Code, as defined in google/rpc/code.proto
GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

SNAKE_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ENTRY_KEYS = {"key", "code", "http", "grpc", "en", "zh"}


class ErrorDef:
    def __init__(self, index, key, code, http, grpc, en, zh):
        self.index = index
        self.key = key
        self.code = code
        self.http = http
        self.grpc = grpc
        self.grpc_code = GRPC_CODES.get(grpc, -1)
        self.en = en
        self.zh = zh
        self.value = -(index + 1)
        self.enum = "ZNP_E_" + key.upper()
        # the message as it may appear inside a C comment
        self.en_comment = en.replace("*/", "* /")


def load_errors(docs):
    """Validate spec/errors.yaml and return the list of ErrorDef in file order."""
    doc = docs.get(ERRORS_FILE)
    if doc is None:
        if ERRORS_FILE not in docs.bytes:
            docs.problem(ERRORS_FILE, "", "file is missing")
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("errors"), list):
        docs.problem(ERRORS_FILE, "", "expected a mapping with a list `errors`")
        return []
    for extra in sorted(set(doc) - {"errors"}, key=str):
        docs.problem(ERRORS_FILE, "/" + str(extra), "unknown top-level key")

    result = []
    keys = {}
    codes = {}
    for i, entry in enumerate(doc["errors"]):
        ptr = "/errors/%d" % i
        if not isinstance(entry, dict):
            docs.problem(ERRORS_FILE, ptr, "expected a mapping")
            continue
        for extra in sorted(set(entry) - ENTRY_KEYS, key=str):
            docs.problem(ERRORS_FILE, ptr + "/" + str(extra), "unknown key (allowed: %s)" % ", ".join(sorted(ENTRY_KEYS)))
        ok = True

        key = entry.get("key")
        if not isinstance(key, str) or not SNAKE_RE.match(key):
            docs.problem(ERRORS_FILE, ptr + "/key", "key must be snake_case, got %r" % (key,))
            ok = False
        elif key in keys:
            docs.problem(ERRORS_FILE, ptr + "/key", "duplicate key %r (first at /errors/%d)" % (key, keys[key]))
            ok = False
        else:
            keys[key] = i

        http = entry.get("http")
        if not isinstance(http, int) or isinstance(http, bool) or not 400 <= http <= 599:
            docs.problem(ERRORS_FILE, ptr + "/http", "http must be an HTTP error status 400-599, got %r" % (http,))
            ok = False

        code = entry.get("code")
        if not isinstance(code, int) or isinstance(code, bool) or not 100000 <= code <= 999999:
            docs.problem(ERRORS_FILE, ptr + "/code", "code must be a six-digit integer, got %r" % (code,))
            ok = False
        else:
            if isinstance(http, int) and code // 1000 != http:
                docs.problem(ERRORS_FILE, ptr + "/code",
                             "code %d must start with the HTTP status %r" % (code, http))
                ok = False
            if code in codes:
                docs.problem(ERRORS_FILE, ptr + "/code",
                             "duplicate code %d (first at /errors/%d)" % (code, codes[code]))
                ok = False
            else:
                codes[code] = i

        grpc = entry.get("grpc")
        if grpc not in GRPC_CODES or grpc == "OK":
            docs.problem(ERRORS_FILE, ptr + "/grpc",
                         "grpc must be a google.rpc.Code name other than OK, got %r" % (grpc,))
            ok = False

        for lang in ("en", "zh"):
            message = entry.get(lang)
            if not isinstance(message, str) or not message.strip():
                docs.problem(ERRORS_FILE, ptr + "/" + lang, "missing or empty %s message" % lang)
                ok = False
            elif "\n" in message or message != message.strip():
                docs.problem(ERRORS_FILE, ptr + "/" + lang, "%s message must be one line without outer spaces" % lang)
                ok = False

        if ok:
            result.append(ErrorDef(i, key, code, http, grpc, entry["en"], entry["zh"]))

    if doc["errors"] and isinstance(doc["errors"][0], dict) and doc["errors"][0].get("key") != "internal":
        docs.problem(ERRORS_FILE, "/errors/0/key", "the first entry must be `internal` so ZNP_E_INTERNAL is -1")
    elif not doc["errors"]:
        docs.problem(ERRORS_FILE, "/errors", "the catalogue is empty; it needs at least `internal`")
    return result
