"""spec/proto/**.proto: packages, services and the `znp:operation` mapping of each rpc."""

import os
import re

PROTO_DIR = "spec/proto"
# services under these packages are served by hand-written code, not through an operation
HAND_WRITTEN_PACKAGES = ("grpc.",)

PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*;")
SERVICE_RE = re.compile(r"^\s*service\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
RPC_RE = re.compile(r"^\s*rpc\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*(stream\s+)?([A-Za-z_.][A-Za-z0-9_.]*)\s*\)"
                    r"\s*returns\s*\(\s*(stream\s+)?([A-Za-z_.][A-Za-z0-9_.]*)\s*\)")
MESSAGE_RE = re.compile(r"^\s*message\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
OPERATION_RE = re.compile(r"^\s*//\s*znp:operation\s+(\S+)\s*$")
MARKER_RE = re.compile(r"^\s*//\s*znp:")


class Rpc:
    def __init__(self, service, name, request, response, line):
        self.service = service
        self.name = name
        self.request = request
        self.response = response
        self.line = line
        self.operation = None     # operationId
        self.op = None            # model.Operation
        self.path = ""
        self.request_descriptor = ""
        self.response_descriptor = ""


class ProtoFile:
    def __init__(self, rel, import_path):
        self.rel = rel                  # spec/proto/znp/v1/znp.proto
        self.import_path = import_path  # znp/v1/znp.proto
        self.package = ""
        self.messages = set()
        self.rpcs = []

    @property
    def hand_written(self):
        return any(self.package.startswith(p) for p in HAND_WRITTEN_PACKAGES)

    @property
    def header(self):
        return self.import_path[:-len(".proto")] + ".pb-c.h"


def protoc_c_lower(name):
    """Convert a CamelCase message name the way protoc-c 1.4 does (GetSiteSettings -> get_site_settings)."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper():
            if i > 0:
                out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def descriptor_name(package, message):
    """C name of the ProtobufCMessageDescriptor for `message` in `package` (znp.v1, PingRequest)."""
    prefix = "__".join(package.split(".")) + "__" if package else ""
    return prefix + protoc_c_lower(message) + "__descriptor"


def load_protos(spec):
    root = spec.root
    base = os.path.join(root, PROTO_DIR)
    files = []
    for dirpath, _dirs, names in os.walk(base):
        for name in names:
            if name.endswith(".proto"):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                files.append(ProtoFile(rel, os.path.relpath(full, base).replace(os.sep, "/")))
    files.sort(key=lambda f: f.rel)
    if not files:
        spec.problem(PROTO_DIR, "", "no .proto files found")
    ops = {op.id: op for op in spec.operations}
    for pf in files:
        parse_proto(spec, pf, ops)
    return files


def parse_proto(spec, pf, ops):
    with open(os.path.join(spec.root, pf.rel), "rb") as f:
        data = f.read()
    spec.docs.bytes[pf.rel] = data
    lines = data.decode("utf-8").splitlines()
    service = None
    pending = None
    for n, line in enumerate(lines, 1):
        m = PACKAGE_RE.match(line)
        if m:
            pf.package = m.group(1)
            continue
        m = MESSAGE_RE.match(line)
        if m:
            pf.messages.add(m.group(1))
            continue
        m = SERVICE_RE.match(line)
        if m:
            service = m.group(1)
            pending = None
            continue
        m = OPERATION_RE.match(line)
        if m:
            if pending is not None:
                spec.problem(pf.rel, "line %d" % n, "second znp:operation comment before one rpc")
            pending = (m.group(1), n)
            continue
        if MARKER_RE.search(line):
            spec.problem(pf.rel, "line %d" % n, "malformed marker; write `// znp:operation <operationId>`")
            continue
        m = RPC_RE.match(line)
        if m:
            rpc = Rpc(service, m.group(1), m.group(3), m.group(5), n)
            streaming = bool(m.group(2) or m.group(4))
            if pending is not None:
                rpc.operation = pending[0]
                pending = None
            pf.rpcs.append(rpc)
            if pf.hand_written:
                if rpc.operation is not None:
                    spec.problem(pf.rel, "line %d" % n, "rpcs of %s are hand-written and take no znp:operation"
                                 % pf.package)
                continue
            if streaming:
                spec.problem(pf.rel, "line %d" % n, "rpc %s: streaming is not supported for operations" % rpc.name)
            if rpc.operation is None:
                spec.problem(pf.rel, "line %d" % n, "rpc %s.%s needs a `// znp:operation <id>` comment line"
                             % (service, rpc.name))
            elif rpc.operation not in ops:
                spec.problem(pf.rel, "line %d" % n, "znp:operation %r is not an operationId in spec/openapi.yaml"
                             % rpc.operation)
            else:
                rpc.op = ops[rpc.operation]
                rpc.op.grpc.append(rpc)
            continue
        if line.strip() and not line.strip().startswith("//"):
            pending = None
    if not pf.package:
        spec.problem(pf.rel, "", "missing package declaration")
    for rpc in pf.rpcs:
        rpc.path = "/%s.%s/%s" % (pf.package, rpc.service, rpc.name)
        for attr, msg in (("request_descriptor", rpc.request), ("response_descriptor", rpc.response)):
            if "." in msg.lstrip("."):
                spec.problem(pf.rel, "line %d" % rpc.line, "rpc %s: message %s from another package is not supported"
                             % (rpc.name, msg))
                continue
            name = msg.lstrip(".")
            if name not in pf.messages:
                spec.problem(pf.rel, "line %d" % rpc.line, "rpc %s: message %s is not defined in this file"
                             % (rpc.name, name))
            setattr(rpc, attr, descriptor_name(pf.package, name))
