"""Load and validate every input under spec/ into one model for the templates."""

import os
import re

import errors_model
import proto_model
import schema_model
import specload
from specload import join

ROOT_FILE = "spec/openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
OPERATION_ID_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
PARAM_RE = re.compile(r"\{([^{}]*)\}")
ADMIN_PARAM = "admin"
ROLES = {"admin": "ZNP_SEC_ADMIN", "user": "ZNP_SEC_USER"}
OPERATION_KEYS = {
    "operationId", "summary", "description", "tags", "security", "parameters", "requestBody", "responses",
    "deprecated", "externalDocs", "x-znp-role", "x-znp-inline", "x-znp-errors", "x-znp-zh",
    "x-znp-stream", "x-rate-limit", "x-znp-cache-seconds",
}
RATE_LIMIT_KINDS = ("ip", "user", "global")
RATE_LIMIT_MAX = 1000000
# media types an operation may stream instead of JSON (x-znp-stream), besides its JSON response
STREAM_TYPES = {"text/csv", "text/plain"}


class Param:
    def __init__(self, name, location, field):
        self.name = name
        self.location = location  # "path" or "query"
        self.field = field        # schema_model.Field with location set


class Operation:
    def __init__(self, op_id, method, path):
        self.id = op_id
        self.method = method.upper()
        self.path = path
        self.summary = ""
        self.description = ""
        self.summary_zh = ""
        self.description_zh = ""
        self.tag = ""
        self.role = None
        self.security = "ZNP_SEC_PUBLIC"
        self.inline = False
        self.stream = None         # media type from x-znp-stream, e.g. "text/csv"
        self.rate_limit = None     # {"ip": (per_minute, burst), ...} from x-rate-limit, or None
        self.cache_seconds = 0     # x-znp-cache-seconds: reuse the encoded response within one N-second window
        self.errors = []           # ErrorDef list from x-znp-errors
        self.success_status = None
        self.success_description = ""
        self.response = None       # Struct or None
        self.response_example = None
        self.has_response_example = False
        self.request = None        # request Struct
        self.params = []           # Param list, path parameters first
        self.body = None           # body Struct or None
        self.body_required = False
        self.body_example = None
        self.has_body_example = False
        self.other_responses = []  # (status, description) for non-2xx entries
        self.segments = []         # (kind, text)
        self.file = ""
        self.pointer = ""
        self.grpc = []             # proto_model.Rpc list that call this operation

    @property
    def request_type(self):
        return "znp_%s_request_t" % self.id

    @property
    def response_type(self):
        return "znp_%s_response_t" % self.id


class Spec:
    def __init__(self, root):
        self.root = root
        self.problems = []
        self.docs = specload.Documents(root, self.problems)
        self.errors = []
        self.errors_by_key = {}
        self.tags = []             # (name, description)
        self.operations = []       # sorted by id
        self.structs = []          # every Struct in header order (dependencies first)
        self.named_structs = []    # structs from components.schemas, by name
        self.proto_files = []
        self.root_doc = None
        self.info = {}

    def problem(self, file, pointer, message):
        self.docs.problem(file, pointer, message)

    def spec_files(self):
        """Return every file under spec/, relative to the root, sorted."""
        result = []
        base = os.path.join(self.root, "spec")
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                result.append(rel)
        return sorted(result)

    def openapi_files(self):
        """Return the YAML files reached from spec/openapi.yaml during validation, sorted."""
        return sorted(f for f in self.docs.docs if f.endswith((".yaml", ".yml")) and f != errors_model.ERRORS_FILE)


def check_refs(spec):
    """Resolve every $ref reachable from the root file; report the ones that do not resolve."""
    docs = spec.docs
    visited = set()
    stack = [(ROOT_FILE, "")]
    while stack:
        rel, pointer = stack.pop()
        if (rel, pointer) in visited:
            continue
        visited.add((rel, pointer))
        try:
            node = docs.lookup(rel, pointer)
        except KeyError:
            continue
        walk_refs(spec, node, rel, pointer, stack)


def walk_refs(spec, node, rel, pointer, stack):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if "$ref" in node:
            if not isinstance(ref, str):
                spec.problem(rel, join(pointer, "$ref"), "$ref must be a string")
            else:
                try:
                    target, tptr, _ = spec.docs.resolve(ref, rel)
                    stack.append((target, tptr))
                except KeyError as e:
                    spec.problem(rel, join(pointer, "$ref"), "unresolved $ref %r: %s" % (ref, e.args[0]))
        for key, value in node.items():
            if key in ("$ref", "example"):
                continue
            walk_refs(spec, value, rel, join(pointer, key), stack)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk_refs(spec, value, rel, join(pointer, i), stack)


def deref(spec, node, rel, pointer):
    """Follow $refs; report a problem and return (None, rel, pointer) when they do not resolve."""
    try:
        return spec.docs.deref(node, rel, pointer)
    except KeyError as e:
        reason = e.args[0]
        # check_refs reports references that do not resolve; a cycle resolves at every step
        if reason.startswith("circular"):
            spec.problem(rel, join(pointer, "$ref"), reason)
        return None, rel, pointer


def load_tags(spec, root):
    tags = root.get("tags", [])
    names = set()
    if not isinstance(tags, list):
        spec.problem(ROOT_FILE, "/tags", "tags must be a list")
        return names
    for i, tag in enumerate(tags):
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            spec.problem(ROOT_FILE, "/tags/%d" % i, "a tag needs a name")
            continue
        if tag["name"] in names:
            spec.problem(ROOT_FILE, "/tags/%d/name" % i, "duplicate tag %r" % tag["name"])
        names.add(tag["name"])
        spec.tags.append((tag["name"], tag.get("description", ""), tag.get("x-znp-zh", "")))
    return names


def load_components(spec, root, conv):
    schemas = root.get("components", {}).get("schemas", {})
    if not isinstance(schemas, dict):
        spec.problem(ROOT_FILE, "/components/schemas", "expected a mapping")
        return
    targets = {}
    for name in sorted(schemas):
        ptr = join("/components/schemas", name)
        if not isinstance(name, str) or not schema_model.CAMEL_RE.match(name):
            spec.problem(ROOT_FILE, ptr, "schema name %r must be CamelCase" % (name,))
            continue
        node, rel, tptr = deref(spec, schemas[name], ROOT_FILE, ptr)
        if node is None:
            continue
        targets[name] = (node, rel, tptr)
        conv.register_name(name, (rel, tptr), (ROOT_FILE, ptr))
    for name in sorted(targets):
        node, rel, tptr = targets[name]
        if not isinstance(node, dict):
            spec.problem(rel, tptr, "expected a schema object")
            continue
        kind, _ = conv.schema_type(node, rel, tptr)
        if kind != "object":
            spec.problem(rel, tptr, "component schema %s must be an object with properties" % name)
            continue
        conv.check_keywords("object", node, rel, tptr)
        st = conv.named_struct(node, rel, tptr, name)
        if st is not None:
            spec.named_structs.append(st)


def security_names(spec, value, rel, pointer, schemes):
    """Names of the security schemes in a security requirement list."""
    if not isinstance(value, list):
        spec.problem(rel, pointer, "security must be a list")
        return []
    names = []
    for i, req in enumerate(value):
        if not isinstance(req, dict):
            spec.problem(rel, join(pointer, i), "a security requirement must be a mapping")
            continue
        for name in req:
            if name not in schemes:
                spec.problem(rel, join(pointer, i, name), "security scheme %r is not declared" % name)
            names.append(name)
    return names


def load_parameters(spec, op, item_params, op_params, conv):
    """Merge path-item and operation parameters (the operation wins) and convert them into fields."""
    merged = {}
    for source in (item_params, op_params):
        plist, rel, pointer = source
        if plist is None:
            continue
        if not isinstance(plist, list):
            spec.problem(rel, pointer, "parameters must be a list")
            continue
        for i, raw in enumerate(plist):
            node, nrel, nptr = deref(spec, raw, rel, join(pointer, i))
            if node is None:
                continue
            if not isinstance(node, dict) or not isinstance(node.get("name"), str) or "in" not in node:
                spec.problem(nrel, nptr, "a parameter needs `name` and `in`")
                continue
            merged[(node["in"], node["name"])] = (node, nrel, nptr)
    return merged


# Paging parameters and their largest allowed maximum, so that page x per_page stays far inside int64.
PAGING_PARAMS = {"page": 1000000, "per_page": 1000}


def convert_parameter(spec, op, node, rel, pointer, conv):
    name, location = node["name"], node["in"]
    if location not in ("path", "query"):
        spec.problem(rel, join(pointer, "in"), "parameters in %r are not supported (path, query)" % location)
        return None
    if not schema_model.C_IDENT_RE.match(name) or name in schema_model.C_KEYWORDS or name == "body":
        spec.problem(rel, join(pointer, "name"), "parameter name %r must be a lowercase C identifier" % name)
        return None
    if "schema" not in node:
        spec.problem(rel, pointer, "a parameter needs a `schema` (content is not supported)")
        return None
    if location == "path" and node.get("required") is not True:
        spec.problem(rel, join(pointer, "required"), "path parameters must be required: true")
    field = conv.convert_field(name, node["schema"], rel, join(pointer, "schema"), op.id, False)
    if field is None:
        return None
    if field.type not in ("ZNP_FT_STRING", "ZNP_FT_INT64", "ZNP_FT_BOOL", "ZNP_FT_NUMBER"):
        spec.problem(rel, join(pointer, "schema"), "parameter %r must be a string, integer, number or boolean" % name)
        return None
    if field.nullable:
        spec.problem(rel, join(pointer, "schema", "type"), "parameters cannot be null")
    if name in PAGING_PARAMS and not 0 < node["schema"].get("maximum", 0) <= PAGING_PARAMS[name]:
        # operations compute OFFSET as (page - 1) * per_page in int64
        spec.problem(rel, join(pointer, "schema"), "query parameter %r needs a maximum from 1 to %d"
                     % (name, PAGING_PARAMS[name]))
    field.location = "ZNP_IN_PATH" if location == "path" else "ZNP_IN_QUERY"
    field.required = location == "path" or node.get("required") is True
    if node.get("description"):
        field.description = node["description"]
    if "example" in node:
        field.example, field.has_example = node["example"], True
    return Param(name, location, field)


def body_struct(spec, conv, op, raw, rel, pointer, inline_name):
    """Struct of a JSON body schema; named when it is a $ref, else `inline_name`."""
    node, nrel, nptr = deref(spec, raw, rel, pointer)
    if node is None:
        return None
    if not isinstance(node, dict):
        spec.problem(nrel, nptr, "expected a schema object")
        return None
    kind, nullable = conv.schema_type(node, nrel, nptr)
    if kind != "object" or nullable:
        spec.problem(nrel, nptr, "a JSON body schema must be a non-null object with properties")
        return None
    conv.check_keywords("object", node, nrel, nptr)
    if node is not raw:
        return conv.named_struct(node, nrel, nptr, nptr.rsplit("/", 1)[-1])
    return conv.object_struct(schema_model.snake_to_camel(inline_name), inline_name, (nrel, nptr), node, nrel, nptr)


def json_media(spec, content, rel, pointer, what, also=None):
    if not isinstance(content, dict) or not content:
        spec.problem(rel, pointer, "%s needs content" % what)
        return None
    for media in content:
        if media != "application/json" and media != also:
            spec.problem(rel, join(pointer, media), "only application/json is supported, got %r" % media)
    media = content.get("application/json")
    if not isinstance(media, dict) or "schema" not in media:
        spec.problem(rel, join(pointer, "application/json"), "%s needs an application/json schema" % what)
        return None
    return media


def load_request_body(spec, op, raw, rel, pointer, conv):
    node, rel, pointer = deref(spec, raw, rel, pointer)
    if node is None:
        return
    if not isinstance(node, dict):
        spec.problem(rel, pointer, "requestBody must be a mapping")
        return
    media = json_media(spec, node.get("content"), rel, join(pointer, "content"), "requestBody")
    if media is None:
        return
    req = node.get("required", False)
    if not isinstance(req, bool):
        spec.problem(rel, join(pointer, "required"), "required must be true or false")
        req = False
    op.body_required = req
    mptr = join(pointer, "content", "application/json")
    op.body = body_struct(spec, conv, op, media["schema"], rel, join(mptr, "schema"), op.id + "_body")
    if "example" in media:
        op.body_example, op.has_body_example = media["example"], True


def load_responses(spec, op, responses, rel, pointer, conv):
    if not isinstance(responses, dict) or not responses:
        spec.problem(rel, pointer, "responses must be a non-empty mapping")
        return
    success = []
    for status in responses:
        key = str(status)
        rptr = join(pointer, key)
        if not (key == "default" or re.match(r"^[1-5][0-9][0-9]$", key)):
            spec.problem(rel, rptr, "response key %r must be a status code or default" % key)
            continue
        node, nrel, nptr = deref(spec, responses[status], rel, rptr)
        if node is None:
            continue
        if not isinstance(node, dict) or not isinstance(node.get("description"), str):
            spec.problem(nrel, nptr, "a response needs a description")
            continue
        if key.startswith("2"):
            success.append((key, node, nrel, nptr))
        else:
            op.other_responses.append((key, node["description"]))
    if len(success) != 1:
        spec.problem(rel, pointer, "an operation needs exactly one 2xx response, found %d" % len(success))
        return

    key, node, nrel, nptr = success[0]
    op.success_status = int(key)
    op.success_description = node["description"]
    if key == "204":
        if node.get("content"):
            spec.problem(nrel, join(nptr, "content"), "a 204 response cannot have content")
        return
    media = json_media(spec, node.get("content"), nrel, join(nptr, "content"), "a %s response" % key, op.stream)
    if media is None:
        return
    mptr = join(nptr, "content", "application/json")
    op.response = body_struct(spec, conv, op, media["schema"], nrel, join(mptr, "schema"), op.id + "_response")
    if "example" in media:
        op.response_example, op.has_response_example = media["example"], True


def load_rate_limit(spec, op, node, rel, pointer):
    """Validate x-rate-limit: {ip|user|global: {per_minute: N, burst: N}}; returns {kind: (per_minute, burst)}."""
    if not isinstance(node, dict) or not node:
        spec.problem(rel, pointer, "x-rate-limit must be a mapping of ip, user or global to {per_minute, burst}")
        return None
    limits = {}
    for kind, value in node.items():
        at = join(pointer, kind)
        if kind not in RATE_LIMIT_KINDS:
            spec.problem(rel, at, "unknown x-rate-limit key %r (expected ip, user or global)" % (kind,))
            continue
        if kind == "user" and op.security == "ZNP_SEC_PUBLIC":
            spec.problem(rel, at, "a user rate limit needs an operation with x-znp-role (public callers have no user)")
            continue
        if not isinstance(value, dict) or set(value) != {"per_minute", "burst"}:
            spec.problem(rel, at, "x-rate-limit %s must have exactly per_minute and burst" % kind)
            continue
        numbers = []
        for name in ("per_minute", "burst"):
            number = value[name]
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= RATE_LIMIT_MAX:
                spec.problem(rel, join(at, name), "%s must be an integer from 1 to %d, got %r"
                             % (name, RATE_LIMIT_MAX, number))
            numbers.append(number)
        limits[kind] = tuple(numbers)
    return limits


def load_operation(spec, path, method, node, rel, pointer, item_params, ctx):
    conv, tag_names, schemes, root_security, seen_ids = ctx
    for key in node:
        if key not in OPERATION_KEYS and not str(key).startswith("x-"):
            spec.problem(rel, join(pointer, key), "unsupported operation key %r" % key)
        elif str(key).startswith("x-znp-") and key not in OPERATION_KEYS:
            spec.problem(rel, join(pointer, key), "unknown znp extension %r" % key)

    op_id = node.get("operationId")
    if not isinstance(op_id, str) or not OPERATION_ID_RE.match(op_id):
        spec.problem(rel, join(pointer, "operationId"), "operationId must be snake_case, got %r" % (op_id,))
        return None
    if op_id in seen_ids:
        spec.problem(rel, join(pointer, "operationId"), "duplicate operationId %r (also %s)" % (op_id, seen_ids[op_id]))
        return None
    seen_ids[op_id] = "%s %s" % (method.upper(), path)
    op = Operation(op_id, method, path)
    op.file, op.pointer = rel, pointer

    summary = node.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        spec.problem(rel, join(pointer, "summary"), "operation %s needs a summary" % op_id)
    else:
        op.summary = summary.strip()
    op.description = (node.get("description") or "").strip()
    zh = node.get("x-znp-zh", {})
    if not isinstance(zh, dict) or set(zh) - {"summary", "description"}:
        spec.problem(rel, join(pointer, "x-znp-zh"), "x-znp-zh may only contain summary and description")
    else:
        op.summary_zh = (zh.get("summary") or "").strip()
        op.description_zh = (zh.get("description") or "").strip()

    tags = node.get("tags")
    if not isinstance(tags, list) or len(tags) != 1:
        spec.problem(rel, join(pointer, "tags"), "operation %s needs exactly one tag" % op_id)
    elif tags[0] not in tag_names:
        spec.problem(rel, join(pointer, "tags", 0), "tag %r is not declared in the root tags" % (tags[0],))
    else:
        op.tag = tags[0]

    # security and role
    if "security" in node:
        sec = security_names(spec, node["security"], rel, join(pointer, "security"), schemes)
    else:
        sec = root_security
    role = node.get("x-znp-role")
    if role is not None:
        if role not in ROLES:
            spec.problem(rel, join(pointer, "x-znp-role"), "x-znp-role must be admin or user, got %r" % (role,))
        elif not sec:
            spec.problem(rel, join(pointer, "security"),
                         "x-znp-role %s needs a security requirement (e.g. bearer)" % role)
        else:
            op.role = role
            op.security = ROLES[role]
    elif sec:
        spec.problem(rel, join(pointer, "x-znp-role"),
                     "operation has a security requirement but no x-znp-role (use security: [] for public)")

    inline = node.get("x-znp-inline", False)
    if not isinstance(inline, bool):
        spec.problem(rel, join(pointer, "x-znp-inline"), "x-znp-inline must be true or false")
    else:
        op.inline = inline

    stream = node.get("x-znp-stream")
    if stream is not None:
        if stream not in STREAM_TYPES:
            spec.problem(rel, join(pointer, "x-znp-stream"),
                         "x-znp-stream must be one of %s, got %r" % (", ".join(sorted(STREAM_TYPES)), stream))
        elif op.inline:
            spec.problem(rel, join(pointer, "x-znp-stream"), "an x-znp-inline operation cannot stream")
        else:
            op.stream = stream

    if "x-rate-limit" in node:
        op.rate_limit = load_rate_limit(spec, op, node["x-rate-limit"], rel, join(pointer, "x-rate-limit"))

    errs = node.get("x-znp-errors", [])
    if not isinstance(errs, list):
        spec.problem(rel, join(pointer, "x-znp-errors"), "x-znp-errors must be a list of error keys")
    else:
        for i, key in enumerate(errs):
            if key not in spec.errors_by_key:
                spec.problem(rel, join(pointer, "x-znp-errors", i),
                             "unknown error key %r (not in spec/errors.yaml)" % (key,))
            elif spec.errors_by_key[key] in op.errors:
                spec.problem(rel, join(pointer, "x-znp-errors", i), "error key %r is listed twice" % key)
            else:
                op.errors.append(spec.errors_by_key[key])

    # parameters
    merged = load_parameters(spec, op, item_params, (node.get("parameters"), rel, join(pointer, "parameters")), conv)
    template_params = PARAM_RE.findall(path)
    for name in template_params:
        if ("path", name) not in merged:
            spec.problem(rel, pointer, "path parameter {%s} of %s is not declared" % (name, path))
    if len(set(template_params)) != len(template_params):
        spec.problem(rel, pointer, "path %s repeats a parameter" % path)
    path_params, query_params = [], []
    for (location, name) in merged:
        pnode, prel, pptr = merged[(location, name)]
        if location == "path" and name not in template_params:
            spec.problem(prel, pptr, "path parameter %r does not appear in %s" % (name, path))
            continue
        if location == "path" and name == ADMIN_PARAM:
            continue
        param = convert_parameter(spec, op, pnode, prel, pptr, conv)
        if param is None:
            continue
        (path_params if location == "path" else query_params).append(param)
    path_params.sort(key=lambda p: template_params.index(p.name))
    query_params.sort(key=lambda p: p.name)
    op.params = path_params + query_params

    if "requestBody" in node:
        if method in ("get", "head", "delete"):
            spec.problem(rel, join(pointer, "requestBody"), "%s operations cannot have a request body" % method.upper())
        load_request_body(spec, op, node["requestBody"], rel, join(pointer, "requestBody"), conv)

    load_responses(spec, op, node.get("responses"), rel, join(pointer, "responses"), conv)

    if "x-znp-cache-seconds" in node:
        cache = node["x-znp-cache-seconds"]
        cptr = join(pointer, "x-znp-cache-seconds")
        if isinstance(cache, bool) or not isinstance(cache, int) or not 1 <= cache <= 3600:
            spec.problem(rel, cptr, "x-znp-cache-seconds must be an integer from 1 to 3600, got %r" % (cache,))
        elif not op.inline or op.method != "GET" or op.security != "ZNP_SEC_PUBLIC" or op.params or op.body:
            # the cached bytes are shared by every caller, so the response must not depend on anything they send
            spec.problem(rel, cptr, "x-znp-cache-seconds needs a public x-znp-inline GET without parameters or body")
        else:
            op.cache_seconds = cache
    return op


def path_segments(spec, path):
    if not path.startswith("/"):
        spec.problem(ROOT_FILE, join("/paths", path), "a path must start with '/'")
        return []
    segments = []
    parts = path.strip("/").split("/") if path != "/" else []
    for part in parts:
        m = re.fullmatch(r"\{([a-z_][a-z0-9_]*)\}", part)
        if m:
            kind = "ZNP_SEG_ADMIN_PREFIX" if m.group(1) == ADMIN_PARAM else "ZNP_SEG_PARAM"
            segments.append((kind, m.group(1)))
        elif part == "" or "{" in part or "}" in part:
            spec.problem(ROOT_FILE, join("/paths", path),
                         "segment %r must be literal text or a whole {parameter}" % part)
        else:
            segments.append(("ZNP_SEG_STATIC", part))
    return segments


def load_paths(spec, root, conv, tag_names):
    schemes = root.get("components", {}).get("securitySchemes", {}) or {}
    root_security = security_names(spec, root.get("security", []), ROOT_FILE, "/security", schemes)
    paths = root.get("paths")
    if not isinstance(paths, dict) or not paths:
        spec.problem(ROOT_FILE, "/paths", "paths must be a non-empty mapping")
        return
    seen_ids = {}
    seen_templates = {}
    ctx = (conv, tag_names, schemes, root_security, seen_ids)
    for path in paths:
        pptr = join("/paths", path)
        item, rel, iptr = deref(spec, paths[path], ROOT_FILE, pptr)
        if item is None:
            continue
        if not isinstance(item, dict):
            spec.problem(rel, iptr, "a path item must be a mapping")
            continue
        segments = path_segments(spec, str(path))
        shape = tuple((k, t if k != "ZNP_SEG_PARAM" else "") for k, t in segments)
        if shape in seen_templates:
            spec.problem(ROOT_FILE, pptr, "path %s matches the same URLs as %s" % (path, seen_templates[shape]))
        seen_templates[shape] = path
        for key in item:
            if key not in METHODS and key not in ("parameters", "summary", "description", "servers"):
                spec.problem(rel, join(iptr, key), "unsupported path item key %r" % key)
        item_params = (item.get("parameters"), rel, join(iptr, "parameters"))
        for method in METHODS:
            if method not in item:
                continue
            node = item[method]
            optr = join(iptr, method)
            if not isinstance(node, dict):
                spec.problem(rel, optr, "an operation must be a mapping")
                continue
            op = load_operation(spec, str(path), method, node, rel, optr, item_params, ctx)
            if op is not None:
                op.segments = segments
                spec.operations.append(op)
    spec.operations.sort(key=lambda o: o.id)


def request_structs(spec, conv):
    """Build the znp_<id>_request_t struct of every operation."""
    for op in spec.operations:
        st = conv.new_struct(op.id + "_request", op.id + "_request", None, {}, op.file, op.pointer)
        if st is None:
            continue
        st.is_request = True
        names = set()
        for param in op.params:
            if param.name in names:
                spec.problem(op.file, join(op.pointer, "parameters"),
                             "parameter %r appears both in the path and in the query" % param.name)
                continue
            names.add(param.name)
            st.fields.append(param.field)
        if op.body is not None:
            body = schema_model.Field("body")
            body.type = "ZNP_FT_OBJECT"
            body.struct = op.body
            body.required = op.body_required
            body.doc_type = op.body.name
            st.fields.append(body)
        st.complete = True
        op.request = st


def order_structs(spec, conv):
    """Order every struct after the structs it embeds, breaking ties by C name."""
    ordered = []
    state = {}

    def visit(st, chain):
        if state.get(st.snake) == "done":
            return
        if state.get(st.snake) == "active":
            file, pointer = st.loc if st.loc else (ROOT_FILE, "")
            spec.problem(file, pointer, "schema %s embeds itself through %s; use an array or a free-form object"
                         % (st.name, " -> ".join(s.name for s in chain)))
            return
        state[st.snake] = "active"
        for dep in sorted(st.deps(), key=lambda s: s.snake):
            visit(dep, chain + [dep])
        state[st.snake] = "done"
        ordered.append(st)

    for is_request in (False, True):
        for snake in sorted(conv.structs):
            st = conv.structs[snake]
            if st.is_request == is_request:
                visit(st, [st])
    spec.structs = ordered


# types the generated headers define themselves
GENERATED_TYPES = {"znp_err_t", "znp_error_info_t", "znp_grpc_method_t"}


def runtime_type_names():
    """znp_*_t names that the hand-written headers under src/ define (next to this generator)."""
    names = set(GENERATED_TYPES)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    for dirpath, _dirs, files in os.walk(src):
        for name in sorted(files):
            if name.endswith(".h"):
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                    text = f.read()
                for m in re.finditer(r"(?:\}|typedef[^;{}]*)\s*\b(znp_[a-z0-9_]+_t)\s*;", text):
                    names.add(m.group(1))
    return names


def check_type_names(spec, conv):
    """Generated type names must not clash with hand-written types or with each other."""
    reserved = runtime_type_names()
    for snake in sorted(conv.structs):
        st = conv.structs[snake]
        if st.c_type in reserved:
            file, pointer = st.loc if st.loc else (ROOT_FILE, "")
            spec.problem(file, pointer, "schema %s would generate %s, which src/ already defines; rename it"
                         % (st.name, st.c_type))
    for op in spec.operations:
        if op.response_type in reserved or op.request_type in reserved:
            spec.problem(op.file, join(op.pointer, "operationId"),
                         "operationId %s would generate a type name that src/ already defines" % op.id)
        other = conv.structs.get(op.id + "_response")
        if other is not None and other is not op.response:
            spec.problem(op.file, op.pointer, "%s would name both the response of %s and schema %s"
                         % (op.response_type, op.id, other.name))


def load(root):
    spec = Spec(root)
    spec.errors = errors_model.load_errors(spec.docs)
    spec.errors_by_key = {e.key: e for e in spec.errors}

    root_doc = spec.docs.get(ROOT_FILE)
    if root_doc is None:
        if ROOT_FILE not in spec.docs.bytes:
            spec.problem(ROOT_FILE, "", "file is missing")
    elif not isinstance(root_doc, dict):
        spec.problem(ROOT_FILE, "", "expected a mapping")
    else:
        spec.root_doc = root_doc
        spec.info = root_doc.get("info", {}) if isinstance(root_doc.get("info"), dict) else {}
        if not str(root_doc.get("openapi", "")).startswith("3.1"):
            spec.problem(ROOT_FILE, "/openapi", "expected openapi: 3.1.x")
        check_refs(spec)
        conv = schema_model.SchemaConverter(spec.docs)
        tag_names = load_tags(spec, root_doc)
        load_components(spec, root_doc, conv)
        load_paths(spec, root_doc, conv, tag_names)
        request_structs(spec, conv)
        order_structs(spec, conv)
        check_type_names(spec, conv)
        used_tags = {op.tag for op in spec.operations}
        for i, (name, _, _) in enumerate(spec.tags):
            if name not in used_tags:
                spec.problem(ROOT_FILE, "/tags/%d" % i, "tag %r has no operations" % name)

    spec.proto_files = proto_model.load_protos(spec)

    unique = {}
    for p in spec.problems:
        unique.setdefault(p.key(), p)
    spec.problems = [unique[k] for k in sorted(unique)]
    return spec
