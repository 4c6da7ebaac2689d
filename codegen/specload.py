"""YAML loading, JSON pointers and $ref resolution across the files of spec/."""

import os

import yaml


class Problem:
    """One validation problem: the file relative to the repository root, a JSON pointer and a message."""

    def __init__(self, file, pointer, message):
        self.file = file
        self.pointer = pointer
        self.message = message

    def format(self):
        return "%s: %s: %s" % (self.file, self.pointer or "/", self.message)

    def key(self):
        return (self.file, self.pointer, self.message)


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings and rejects duplicate mapping keys."""


# Dates in examples must stay strings, otherwise the bundled JSON could not hold them.
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DuplicateKeyError(yaml.YAMLError):
    pass


def construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise DuplicateKeyError("duplicate key %r at line %d" % (key, key_node.start_mark.line + 1))
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)


def escape_token(token):
    return str(token).replace("~", "~0").replace("/", "~1")


def unescape_token(token):
    return token.replace("~1", "/").replace("~0", "~")


def join(pointer, *tokens):
    for token in tokens:
        pointer = pointer + "/" + escape_token(token)
    return pointer


class Documents:
    """Loaded YAML files keyed by path relative to the repository root, with $ref resolution."""

    def __init__(self, root, problems):
        self.root = root
        self.problems = problems
        self.docs = {}
        self.failed = set()
        self.bytes = {}

    def problem(self, file, pointer, message):
        self.problems.append(Problem(file, pointer, message))

    def get(self, rel):
        """Parsed content of `rel` (e.g. "spec/openapi.yaml"), or None after reporting why it failed."""
        if rel in self.docs:
            return self.docs[rel]
        if rel in self.failed:
            return None
        full = os.path.join(self.root, rel)
        try:
            with open(full, "rb") as f:
                data = f.read()
            self.bytes[rel] = data
            doc = yaml.load(data.decode("utf-8"), Loader=SpecLoader)
        except FileNotFoundError:
            self.failed.add(rel)
            return None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            self.failed.add(rel)
            mark = getattr(e, "problem_mark", None)
            if mark is not None:
                reason = "line %d, column %d: %s" % (mark.line + 1, mark.column + 1, e.problem)
            else:
                reason = str(e).replace("\n", " ")
            self.problem(rel, "", "cannot parse YAML: %s" % reason)
            return None
        self.docs[rel] = doc
        return doc

    def lookup(self, rel, pointer):
        """Node at `pointer` in `rel`; raises KeyError when the pointer does not resolve."""
        node = self.get(rel)
        if node is None:
            raise KeyError("file %s not found or not parseable" % rel)
        if pointer == "":
            return node
        if not pointer.startswith("/"):
            raise KeyError("JSON pointer %r must start with '/'" % pointer)
        for raw in pointer[1:].split("/"):
            token = unescape_token(raw)
            if isinstance(node, dict):
                if token in node:
                    node = node[token]
                elif token.isdigit() and int(token) in node:
                    node = node[int(token)]
                else:
                    raise KeyError("no member %r" % token)
            elif isinstance(node, list):
                if not token.isdigit() or int(token) >= len(node):
                    raise KeyError("no element %r" % token)
                node = node[int(token)]
            else:
                raise KeyError("cannot descend into a scalar at %r" % token)
        return node

    def ref_target(self, ref, rel):
        """Split `ref` found in file `rel` into (file, pointer); the file is relative to the root."""
        if "#" in ref:
            file_part, pointer = ref.split("#", 1)
        else:
            file_part, pointer = ref, ""
        if file_part == "":
            return rel, pointer
        if "://" in file_part:
            raise KeyError("remote $ref %r is not supported" % ref)
        target = os.path.normpath(os.path.join(os.path.dirname(rel), file_part)).replace(os.sep, "/")
        return target, pointer

    def resolve(self, ref, rel):
        """Return (file, pointer, node) for `ref` found in `rel`; raises KeyError with the reason."""
        target, pointer = self.ref_target(ref, rel)
        if self.get(target) is None:
            raise KeyError("file %s not found or not parseable" % target)
        return target, pointer, self.lookup(target, pointer)

    def deref(self, node, rel, pointer):
        """Follow $ref chains from `node`; return (node, file, pointer) of the first non-$ref node.

        Raises KeyError for an unresolved or circular chain.
        """
        seen = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            target, tptr, tnode = self.resolve(node["$ref"], rel)
            if (target, tptr) in seen:
                raise KeyError("circular $ref %r" % node["$ref"])
            seen.add((target, tptr))
            node, rel, pointer = tnode, target, tptr
        return node, rel, pointer
