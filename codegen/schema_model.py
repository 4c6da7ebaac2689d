"""JSON Schema subset that the codec in src/core supports, converted into C struct descriptions."""

import re

import pattern as pattern_module
import specload

CAMEL_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
C_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
    "true", "false", "has", "reserved",
}

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

FORMATS = {
    "email": "ZNP_FMT_EMAIL",
    "uri": "ZNP_FMT_URI",
    "date-time": "ZNP_FMT_DATE_TIME",
    "uuid": "ZNP_FMT_UUID",
    "hostname": "ZNP_FMT_HOSTNAME",
}

ANNOTATIONS = {"description", "example", "examples", "title", "deprecated", "$comment"}
COMMON = ANNOTATIONS | {"type", "readOnly", "writeOnly", "x-znp-secret", "default", "nullable"}
KEYWORDS = {
    "string": COMMON | {"minLength", "maxLength", "pattern", "format", "enum"},
    "integer": COMMON | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"},
    "number": COMMON | {"minimum", "maximum", "format"},
    "boolean": COMMON,
    "array": COMMON | {"items", "minItems", "maxItems"},
    "object": COMMON | {"properties", "required", "additionalProperties"},
    "json": COMMON | {"properties", "additionalProperties"},
}

C_TYPES = {
    "ZNP_FT_STRING": "char *",
    "ZNP_FT_INT64": "int64_t",
    "ZNP_FT_BOOL": "bool",
    "ZNP_FT_NUMBER": "double",
    "ZNP_FT_ARRAY": "znp_array_t",
    "ZNP_FT_JSON": "json_t *",
}


def camel_to_snake(name):
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", s)
    return s.lower()


def snake_to_camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Struct:
    """One generated C struct with its descriptor table."""

    def __init__(self, name, snake, loc, description=""):
        self.name = name            # schema name as in the spec, e.g. "SiteSetting"
        self.snake = snake          # site_setting
        self.c_type = "znp_%s_t" % snake
        self.c_tag = "znp_%s" % snake
        self.schema_var = "znp_%s_schema" % snake
        self.loc = loc              # (file, pointer) of the schema, or None for request structs
        self.description = description
        self.fields = []
        self.complete = False
        self.is_request = False
        self.node = None            # the schema node, for docs and examples

    def deps(self):
        """Structs that must be complete before this one (nested inline objects)."""
        return [f.struct for f in self.fields if f.type == "ZNP_FT_OBJECT"]


class Item:
    """The item type of an array field."""

    def __init__(self):
        self.type = None
        self.struct = None
        self.flags = []
        self.min = self.max = None
        self.min_length = 0
        self.max_length = 0
        self.enum = None
        self.format = "ZNP_FMT_NONE"
        self.doc_type = ""

    @property
    def size_expr(self):
        if self.type == "ZNP_FT_OBJECT":
            return "sizeof(%s)" % self.struct.c_type
        return "sizeof(%s)" % C_TYPES[self.type].rstrip()


class Field:
    """One member of a generated struct and its znp_field_t row."""

    def __init__(self, name):
        self.name = name
        self.type = None
        self.location = "ZNP_IN_BODY"
        self.required = False
        self.nullable = False
        self.write_only = False
        self.read_only = False
        self.secret = False
        self.min = self.max = None
        self.min_number = self.max_number = None
        self.min_length = 0
        self.max_length = 0
        self.pattern = None         # as in the spec (ECMA-262 syntax, shown in the docs)
        self.pattern_posix = None   # POSIX ERE for the codec
        self.format = "ZNP_FMT_NONE"
        self.format_name = None
        self.enum = None
        self.min_items = 0
        self.max_items = 0
        self.item = None
        self.struct = None
        self.default = None
        self.has_default = False
        self.description = ""
        self.example = None
        self.has_example = False
        self.doc_type = ""

    @property
    def c_decl(self):
        if self.type == "ZNP_FT_OBJECT":
            return "%s %s;" % (self.struct.c_type, self.name)
        ctype = C_TYPES[self.type]
        sep = "" if ctype.endswith("*") else " "
        return "%s%s%s;" % (ctype, sep, self.name)

    @property
    def flags(self):
        flags = []
        if self.required:
            flags.append("ZNP_F_REQUIRED")
        if self.nullable:
            flags.append("ZNP_F_NULLABLE")
        if self.write_only:
            flags.append("ZNP_F_WRITE_ONLY")
        if self.read_only:
            flags.append("ZNP_F_READ_ONLY")
        if self.min is not None or self.min_number is not None:
            flags.append("ZNP_F_HAS_MIN")
        if self.max is not None or self.max_number is not None:
            flags.append("ZNP_F_HAS_MAX")
        if self.has_default:
            flags.append("ZNP_F_HAS_DEFAULT")
        if self.secret:
            flags.append("ZNP_F_SECRET")
        return flags

    def constraints(self, lang="en"):
        """Constraints for the docs, in `lang` (en or zh)."""
        w = CONSTRAINT_WORDS[lang]
        out = []
        if self.min is not None and self.max is not None:
            out.append("%d..%d" % (self.min, self.max))
        elif self.min is not None:
            out.append(">= %d" % self.min)
        elif self.max is not None:
            out.append("<= %d" % self.max)
        if self.min_number is not None:
            out.append(">= %s" % self.min_number)
        if self.max_number is not None:
            out.append("<= %s" % self.max_number)

        if self.min_length or self.max_length:
            if self.max_length:
                out.append("%s %d..%d" % (w["length"], self.min_length, self.max_length))
            else:
                out.append("%s >= %d" % (w["length"], self.min_length))
        if self.min_items or self.max_items:
            if self.max_items:
                out.append("%s %d..%d" % (w["items"], self.min_items, self.max_items))
            else:
                out.append("%s >= %d" % (w["items"], self.min_items))
        if self.item is not None:
            if self.item.max_length:
                out.append("%s %d..%d" % (w["item_length"], self.item.min_length, self.item.max_length))
            if self.item.enum:
                out.append(w["item_one_of"] + " " + ", ".join("`%s`" % v for v in self.item.enum))
        if self.format_name:
            out.append("%s `%s`" % (w["format"], self.format_name))
        if self.enum:
            out.append(w["one_of"] + " " + ", ".join("`%s`" % v for v in self.enum))
        if self.pattern is not None:
            out.append("%s `%s`" % (w["pattern"], self.pattern))
        if self.has_default:
            out.append("%s `%s`" % (w["default"], doc_scalar(self.default)))
        return out


CONSTRAINT_WORDS = {
    "en": {"length": "length", "items": "items", "item_length": "item length", "item_one_of": "each one of",
           "format": "format", "one_of": "one of", "pattern": "pattern", "default": "default"},
    "zh": {"length": "长度", "items": "元素个数", "item_length": "元素长度", "item_one_of": "元素取值",
           "format": "格式", "one_of": "取值", "pattern": "模式", "default": "默认值"},
}


def doc_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


class SchemaConverter:
    """Converts schema nodes into Struct/Field objects, reporting unsupported constructs."""

    def __init__(self, docs):
        self.docs = docs
        self.structs = {}        # snake name -> Struct
        self.by_loc = {}         # (file, pointer) -> Struct
        self.names = {}          # (file, pointer) -> spec name for named schemas

    def problem(self, file, pointer, message):
        self.docs.problem(file, pointer, message)

    def register_name(self, name, loc, where):
        """Give the schema at `loc` the name `name` (from components.schemas)."""
        if loc in self.names and self.names[loc] != name:
            self.problem(where[0], where[1], "schema is already named %r" % self.names[loc])
            return
        self.names[loc] = name

    def new_struct(self, name, snake, loc, node, file, pointer):
        if snake in self.structs:
            other = self.structs[snake]
            where = "%s#%s" % other.loc if other.loc else "a request struct"
            self.problem(file, pointer, "C name znp_%s_t is also used by %s" % (snake, where))
            return None
        st = Struct(name, snake, loc, node.get("description", "") if isinstance(node, dict) else "")
        st.node = node
        self.structs[snake] = st
        if loc is not None:
            self.by_loc[loc] = st
        return st

    def named_struct(self, node, file, pointer, fallback_name):
        """Struct for an object schema reached through a $ref (named) at (file, pointer)."""
        loc = (file, pointer)
        if loc in self.by_loc:
            return self.by_loc[loc]
        name = self.names.get(loc)
        if name is None:
            name = fallback_name
        return self.object_struct(name, camel_to_snake(name), loc, node, file, pointer)

    def object_struct(self, name, snake, loc, node, file, pointer):
        st = self.new_struct(name, snake, loc, node, file, pointer)
        if st is None:
            return None
        self.fill_struct(st, node, file, pointer)
        return st

    def fill_struct(self, st, node, file, pointer):
        props = node.get("properties")
        if not isinstance(props, dict):
            self.problem(file, pointer, "an object schema needs `properties` to become a C struct")
            st.complete = True
            return
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.problem(file, specload.join(pointer, "required"), "required must be a list of property names")
            required = []
        for r in required:
            if r not in props:
                self.problem(file, specload.join(pointer, "required"), "required property %r is not defined" % r)
        ap = node.get("additionalProperties", None)
        if ap not in (None, False, True):
            self.problem(file, specload.join(pointer, "additionalProperties"),
                         "typed additionalProperties (a map) is not supported; use a free-form object field")
        for pname in props:
            fptr = specload.join(pointer, "properties", pname)
            if not isinstance(pname, str) or not C_IDENT_RE.match(pname) or pname in C_KEYWORDS:
                self.problem(file, fptr, "property name %r must be a lowercase C identifier and not a C keyword"
                             % (pname,))
                continue
            field = self.convert_field(pname, props[pname], file, fptr, st.snake, pname in required)
            if field is not None:
                st.fields.append(field)
        st.complete = True

    def schema_type(self, node, file, pointer):
        """Return (kind, nullable) where kind is string/integer/number/boolean/array/object/json, or None."""
        if "nullable" in node:
            self.problem(file, specload.join(pointer, "nullable"),
                         "`nullable` is OpenAPI 3.0; write type: [<type>, 'null']")
        for combiner in ("allOf", "anyOf", "oneOf", "not", "const", "$defs", "if"):
            if combiner in node:
                self.problem(file, specload.join(pointer, combiner), "%s is not supported by the codec" % combiner)
                return None, False
        t = node.get("type")
        nullable = False
        if isinstance(t, list):
            types = [x for x in t if x != "null"]
            nullable = len(types) != len(t)
            if len(types) != 1 or len(t) > 2:
                self.problem(file, specload.join(pointer, "type"),
                             "type list must be one type, optionally with 'null', got %r" % (t,))
                return None, False
            t = types[0]
        if t is None:
            if "properties" in node:
                t = "object"
            elif not (set(node) - ANNOTATIONS):
                return "json", nullable
            else:
                self.problem(file, pointer, "schema has no type")
                return None, False
        if t not in ("string", "integer", "number", "boolean", "array", "object"):
            self.problem(file, specload.join(pointer, "type"), "unsupported type %r" % (t,))
            return None, False
        if t == "object" and "properties" not in node:
            return "json", nullable
        return t, nullable

    def check_keywords(self, kind, node, file, pointer):
        allowed = KEYWORDS[kind]
        for key in node:
            if key.startswith("x-") and key != "x-znp-secret":
                continue
            if key not in allowed:
                self.problem(file, specload.join(pointer, key),
                             "keyword %r is not supported for %s schemas" % (key, kind))

    def convert_field(self, name, raw, file, pointer, parent_snake, required):
        field = Field(name)
        field.required = required
        if not isinstance(raw, dict):
            self.problem(file, pointer, "expected a schema object")
            return None
        description = raw.get("description", "")
        # a $ref with sibling annotations: the siblings describe this use of the schema
        try:
            node, nfile, nptr = self.docs.deref(raw, file, pointer)
        except KeyError as e:
            self.problem(file, specload.join(pointer, "$ref"), "unresolved $ref %r: %s"
                         % (raw.get("$ref"), e.args[0]))
            return None
        if not isinstance(node, dict):
            self.problem(nfile, nptr, "expected a schema object")
            return None
        is_ref = node is not raw
        field.description = description or node.get("description", "")
        for src in (raw, node):
            if "example" in src:
                field.example = src["example"]
                field.has_example = True
                break

        kind, field.nullable = self.schema_type(node, nfile, nptr)
        if kind is None:
            return None
        self.check_keywords(kind, node, nfile, nptr)
        field.read_only = self.flag(node, "readOnly", nfile, nptr)
        field.write_only = self.flag(node, "writeOnly", nfile, nptr)
        field.secret = self.flag(node, "x-znp-secret", nfile, nptr)
        if field.read_only and field.write_only:
            self.problem(nfile, nptr, "a property cannot be both readOnly and writeOnly")

        if kind == "string":
            field.type = "ZNP_FT_STRING"
            self.string_constraints(field, node, nfile, nptr)
            field.doc_type = "string"
        elif kind == "integer":
            field.type = "ZNP_FT_INT64"
            self.integer_constraints(field, node, nfile, nptr)
            field.doc_type = "integer"
        elif kind == "number":
            field.type = "ZNP_FT_NUMBER"
            self.number_constraints(field, node, nfile, nptr)
            field.doc_type = "number"
        elif kind == "boolean":
            field.type = "ZNP_FT_BOOL"
            field.doc_type = "boolean"
        elif kind == "json":
            field.type = "ZNP_FT_JSON"
            field.doc_type = "object" if node.get("type") in ("object", ["object", "null"]) else "any"
        elif kind == "object":
            field.type = "ZNP_FT_OBJECT"
            if is_ref:
                st = self.named_struct(node, nfile, nptr, nptr.rsplit("/", 1)[-1])
            else:
                snake = "%s_%s" % (parent_snake, name)
                st = self.object_struct(snake_to_camel(snake), snake, (nfile, nptr), node, nfile, nptr)
            if st is None:
                return None
            field.struct = st
            field.doc_type = st.name
        elif kind == "array":
            field.type = "ZNP_FT_ARRAY"
            self.array_constraints(field, node, nfile, nptr, parent_snake)
            if field.item is None:
                return None
            field.doc_type = "array of %s" % field.item.doc_type

        self.default(field, kind, node, nfile, nptr)
        if field.nullable:
            field.doc_type += " | null"
        return field

    def flag(self, node, key, file, pointer):
        value = node.get(key, False)
        if not isinstance(value, bool):
            self.problem(file, specload.join(pointer, key), "%s must be true or false" % key)
            return False
        return value

    def non_negative(self, node, key, file, pointer):
        value = node.get(key)
        if value is None:
            return 0
        if not is_int(value) or value < 0:
            self.problem(file, specload.join(pointer, key), "%s must be a non-negative integer" % key)
            return 0
        return value

    def string_constraints(self, field, node, file, pointer):
        field.min_length = self.non_negative(node, "minLength", file, pointer)
        field.max_length = self.non_negative(node, "maxLength", file, pointer)
        if "maxLength" in node and field.max_length == 0:
            self.problem(file, specload.join(pointer, "maxLength"), "maxLength 0 would mean no limit to the codec")
        if field.max_length and field.min_length > field.max_length:
            self.problem(file, specload.join(pointer, "minLength"), "minLength is greater than maxLength")
        if "pattern" in node:
            if not isinstance(node["pattern"], str) or not node["pattern"]:
                self.problem(file, specload.join(pointer, "pattern"), "pattern must be a non-empty string")
            else:
                try:
                    field.pattern_posix = pattern_module.to_posix(node["pattern"])
                    re.compile(node["pattern"])
                    field.pattern = node["pattern"]
                except (pattern_module.PatternError, re.error) as e:
                    self.problem(file, specload.join(pointer, "pattern"), "unsupported pattern: %s" % e)
        fmt = node.get("format")
        if fmt is not None:
            if fmt not in FORMATS:
                self.problem(file, specload.join(pointer, "format"),
                             "string format %r is not checked by the codec (supported: %s)"
                             % (fmt, ", ".join(sorted(FORMATS))))
            else:
                field.format = FORMATS[fmt]
                field.format_name = fmt
        if "enum" in node:
            field.enum = self.enum_values(node, file, pointer)

    def enum_values(self, node, file, pointer):
        values = node["enum"]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            self.problem(file, specload.join(pointer, "enum"), "enum must be a non-empty list of strings")
            return None
        if len(set(values)) != len(values):
            self.problem(file, specload.join(pointer, "enum"), "enum has duplicate values")
        return list(values)

    def integer_constraints(self, field, node, file, pointer):
        fmt = node.get("format")
        lo, hi = INT64_MIN, INT64_MAX
        if fmt == "int32":
            lo, hi = INT32_MIN, INT32_MAX
            field.min, field.max = lo, hi
        elif fmt not in (None, "int64"):
            self.problem(file, specload.join(pointer, "format"), "integer format must be int32 or int64")
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key not in node:
                continue
            value = node[key]
            if not is_int(value) or not lo <= value <= hi:
                self.problem(file, specload.join(pointer, key), "%s must be an integer in %d..%d" % (key, lo, hi))
                continue
            if key == "minimum":
                field.min = value
            elif key == "maximum":
                field.max = value
            elif key == "exclusiveMinimum":
                field.min = value + 1
            else:
                field.max = value - 1
        if field.min is not None and field.max is not None and field.min > field.max:
            self.problem(file, pointer, "minimum is greater than maximum")

    def number_constraints(self, field, node, file, pointer):
        fmt = node.get("format")
        if fmt not in (None, "double", "float"):
            self.problem(file, specload.join(pointer, "format"), "number format must be double or float")
        for key in ("minimum", "maximum"):
            if key in node:
                value = node[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.problem(file, specload.join(pointer, key), "%s must be a number" % key)
                elif key == "minimum":
                    field.min_number = float(value)
                else:
                    field.max_number = float(value)

    def array_constraints(self, field, node, file, pointer, parent_snake):
        field.min_items = self.non_negative(node, "minItems", file, pointer)
        field.max_items = self.non_negative(node, "maxItems", file, pointer)
        if field.max_items and field.min_items > field.max_items:
            self.problem(file, specload.join(pointer, "minItems"), "minItems is greater than maxItems")

        raw = node.get("items")
        iptr = specload.join(pointer, "items")
        if not isinstance(raw, dict):
            self.problem(file, iptr, "an array needs an `items` schema")
            return
        try:
            inode, ifile, iiptr = self.docs.deref(raw, file, iptr)
        except KeyError as e:
            self.problem(file, specload.join(iptr, "$ref"), "unresolved $ref %r: %s"
                         % (raw.get("$ref"), e.args[0]))
            return
        if not isinstance(inode, dict):
            self.problem(ifile, iiptr, "expected a schema object")
            return
        kind, nullable = self.schema_type(inode, ifile, iiptr)
        if kind is None:
            return
        if nullable:
            self.problem(ifile, specload.join(iiptr, "type"), "array items cannot be nullable")

        item = Item()
        self.check_keywords(kind, inode, ifile, iiptr)
        if kind == "string":
            item.type = "ZNP_FT_STRING"
            probe = Field(field.name)
            self.string_constraints(probe, inode, ifile, iiptr)
            if probe.pattern is not None:
                self.problem(ifile, specload.join(iiptr, "pattern"), "pattern on array items is not supported")
            item.min_length, item.max_length = probe.min_length, probe.max_length
            item.enum, item.format = probe.enum, probe.format
            item.doc_type = "string"
        elif kind == "integer":
            item.type = "ZNP_FT_INT64"
            probe = Field(field.name)
            self.integer_constraints(probe, inode, ifile, iiptr)
            item.min, item.max = probe.min, probe.max
            item.doc_type = "integer"
        elif kind == "object":
            item.type = "ZNP_FT_OBJECT"
            if inode is not raw:
                st = self.named_struct(inode, ifile, iiptr, iiptr.rsplit("/", 1)[-1])
            else:
                snake = "%s_%s_item" % (parent_snake, field.name)
                st = self.object_struct(snake_to_camel(snake), snake, (ifile, iiptr), inode, ifile, iiptr)
            if st is None:
                return
            item.struct = st
            item.doc_type = st.name
        else:
            self.problem(ifile, iiptr, "array items of type %s are not supported (string, integer, object)" % kind)
            return
        if item.min is not None:
            item.flags.append("ZNP_F_HAS_MIN")
        if item.max is not None:
            item.flags.append("ZNP_F_HAS_MAX")
        field.item = item

    def default(self, field, kind, node, file, pointer):
        if "default" not in node:
            return
        value = node["default"]
        ptr = specload.join(pointer, "default")
        if kind == "string" and isinstance(value, str):
            if field.enum and value not in field.enum:
                self.problem(file, ptr, "default %r is not one of the enum values" % value)
        elif kind == "integer" and is_int(value):
            if (field.min is not None and value < field.min) or (field.max is not None and value > field.max):
                self.problem(file, ptr, "default %d is out of range" % value)
        elif kind == "boolean" and isinstance(value, bool):
            pass
        else:
            self.problem(file, ptr, "default must be a %s (defaults are supported for string, integer and boolean)"
                         % kind)
            return
        field.default = value
        field.has_default = True
