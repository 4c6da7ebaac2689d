"""Bundle spec/openapi.yaml and the files it references into one JSON document."""

import json

import specload

ROOT_FILE = "spec/openapi.yaml"
SECTIONS = ("schemas", "parameters", "responses", "requestBodies", "headers", "examples", "securitySchemes")
SCHEMA_DIR = "spec/schemas/"
# values copied as data: a `$ref` key inside an example is not a reference
VERBATIM = ("example", "enum", "const")


def plain(value):
    """Copy of a YAML value with every mapping key as a string."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Bundler:
    def __init__(self, docs):
        self.docs = docs
        self.alias = {}        # (file, pointer) -> "#/components/<section>/<name>"
        self.hoisted = {}      # schema name -> bundled schema, for schemas reached only through $ref
        self.names = {}        # components.schemas name -> (file, pointer)

    def target(self, node, rel, pointer):
        node, rel, pointer = self.docs.deref(node, rel, pointer)
        return node, rel, pointer

    def convert(self, node, rel, pointer, stack):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                return self.convert_ref(node, rel, pointer, stack)
            out = {}
            for key, value in node.items():
                if key in VERBATIM or (key == "default" and not pointer.endswith("/responses")):
                    out[str(key)] = plain(value)
                else:
                    out[str(key)] = self.convert(value, rel, specload.join(pointer, key), stack)
            return out
        if isinstance(node, list):
            return [self.convert(v, rel, specload.join(pointer, i), stack) for i, v in enumerate(node)]
        return node

    def convert_ref(self, node, rel, pointer, stack):
        trel, tptr, tnode = self.docs.resolve(node["$ref"], rel)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        loc = (trel, tptr)
        if loc in self.alias:
            ref = self.alias[loc]
        elif trel == ROOT_FILE:
            ref = "#" + tptr
        elif trel.startswith(SCHEMA_DIR):
            ref = self.hoist(tnode, trel, tptr, stack)
        else:
            if loc in stack:
                raise ValueError("circular $ref through %s#%s" % loc)
            out = self.convert(tnode, trel, tptr, stack + [loc])
            if isinstance(out, dict):
                out = dict(out)
                out.update(self.convert(siblings, rel, pointer, stack))
            return out
        out = {"$ref": ref}
        out.update(self.convert(siblings, rel, pointer, stack))
        return out

    def hoist(self, node, rel, pointer, stack):
        """Move a schema reached through a $ref into components.schemas; return its local $ref."""
        base = pointer.rsplit("/", 1)[-1] or "Schema"
        name = base
        n = 2
        while name in self.names and self.names[name] != (rel, pointer):
            name = "%s%d" % (base, n)
            n += 1
        ref = "#/components/schemas/" + specload.escape_token(name)
        self.alias[(rel, pointer)] = ref
        if name not in self.names:
            self.names[name] = (rel, pointer)
            self.hoisted[name] = None
            self.hoisted[name] = self.convert(node, rel, pointer, stack + [(rel, pointer)])
        return ref

    def bundle(self):
        root = self.docs.get(ROOT_FILE)
        components = root.get("components", {}) or {}
        # entries of the root components that only point elsewhere become the home of their target
        for section in SECTIONS:
            for name, value in (components.get(section) or {}).items():
                if isinstance(value, dict) and isinstance(value.get("$ref"), str):
                    node, rel, pointer = self.target(value, ROOT_FILE, "")
                    if rel != ROOT_FILE:
                        ref = "#/components/%s/%s" % (section, specload.escape_token(name))
                        self.alias.setdefault((rel, pointer), ref)
                        if section == "schemas":
                            self.names[name] = (rel, pointer)

        out = {}
        for key, value in root.items():
            if key == "components":
                continue
            out[str(key)] = self.convert(value, ROOT_FILE, "/" + specload.escape_token(key), [])
        comp_out = {}
        for section, entries in components.items():
            if not isinstance(entries, dict):
                comp_out[section] = plain(entries)
                continue
            sec_out = {}
            for name, value in entries.items():
                ptr = specload.join("/components", section, name)
                if isinstance(value, dict) and isinstance(value.get("$ref"), str):
                    node, rel, pointer = self.target(value, ROOT_FILE, ptr)
                    if rel != ROOT_FILE:
                        sec_out[str(name)] = self.convert(node, rel, pointer, [(rel, pointer)])
                        continue
                sec_out[str(name)] = self.convert(value, ROOT_FILE, ptr, [])
            comp_out[str(section)] = sec_out
        for name, schema in self.hoisted.items():
            comp_out.setdefault("schemas", {}).setdefault(name, schema)
        out["components"] = comp_out
        return out


def add_error_responses(spec, doc, op_errors):
    """Add one response per HTTP status an operation can fail with, unless the spec lists that status.

    The statuses come from x-znp-errors plus the errors that authentication and
    request decoding imply, so clients see them without reading the extension.
    """
    if "ErrorEnvelope" not in doc.get("components", {}).get("schemas", {}):
        return
    for op in spec.operations:
        responses = doc["paths"][op.path][op.method.lower()]["responses"]
        by_status = {}
        for err in op_errors(spec, op):
            by_status.setdefault(str(err.http), []).append(err)
        for status, errs in by_status.items():
            if status in responses:
                continue
            responses[status] = {
                "description": ", ".join("%s (%d)" % (e.key, e.code) for e in errs),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            }


def bundle_json(spec, op_errors):
    doc = Bundler(spec.docs).bundle()
    add_error_responses(spec, doc, op_errors)
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
