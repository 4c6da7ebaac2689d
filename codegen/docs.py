"""Markdown API reference and error-code table, in English and Simplified Chinese."""

import json

LABELS = {
    "en": {
        "api_title": "reference",
        "api_intro": (
            "Every operation of the znp REST API, generated from `spec/openapi.yaml`. Request and response "
            "bodies are JSON (`application/json`). Every non-2xx answer carries the error envelope "
            "`{\"code\", \"error\", \"message\", \"details\", \"request_id\"}`; the codes are listed in "
            "[error codes](error-codes.md). `{admin}` in a path is the configured admin prefix "
            "(`server.admin_prefix`, default `admin`). Operations with access *user* or *admin* need the header "
            "`Authorization: Bearer <access token>`."),
        "grpc_intro": "Operations with a gRPC method accept the same fields as protobuf messages; "
                      "credentials go in the `authorization` metadata key.",
        "contents": "Contents",
        "operation_id": "Operation ID",
        "access": "Access",
        "grpc": "gRPC method",
        "rate_limit": "Rate limit",
        "rate_kinds": {"ip": "per client address", "user": "per user", "global": "for all clients together"},
        "rate_format": "{per_minute} per minute {kind} (burst {burst})",
        "access_names": {"ZNP_SEC_PUBLIC": "public", "ZNP_SEC_USER": "user (any signed-in user)",
                         "ZNP_SEC_ADMIN": "admin"},
        "parameters": "Parameters",
        "request_body": "Request body",
        "required_body": "required",
        "optional_body": "optional",
        "responses": "Responses",
        "response_fields": "Response fields",
        "errors": "Errors",
        "example": "Example",
        "request": "Request",
        "response": "Response",
        "col_name": "Name",
        "col_in": "In",
        "col_field": "Field",
        "col_type": "Type",
        "col_required": "Required",
        "col_constraints": "Constraints",
        "col_description": "Description",
        "col_status": "Status",
        "col_body": "Body",
        "col_code": "Code",
        "col_key": "Key",
        "col_http": "HTTP",
        "col_grpc": "gRPC",
        "col_message": "Message",
        "yes": "yes",
        "no": "no",
        "none": "none",
        "no_body": "no body",
        "read_only": "read-only",
        "write_only": "write-only",
        "secret": "secret, never logged",
        "nullable": "nullable",
        "errors_intro": "Any operation can also return the general errors in [error codes](error-codes.md), "
                        "such as `too_many_requests` and `internal`.",
        "no_errors": "No errors specific to this operation.",
        "errors_title": "Error codes",
        "errors_doc_intro": (
            "Every error answer of znp has the body `{\"code\", \"error\", \"message\", \"details\", "
            "\"request_id\"}`. `code` is a stable six-digit number whose first three digits are the HTTP status; "
            "`error` is the stable key. The message follows `Accept-Language` (English or Simplified Chinese). "
            "gRPC calls return the listed status code with the message. Generated from `spec/errors.yaml`."),
        "in_names": {"path": "path", "query": "query"},
        "colon": ": ",
        "body_line": "`{name}`, {required}.",
        "error_msg_key": "en",
        "other_lang": "[简体中文](zh-CN/{file})",
    },
    "zh": {
        "api_title": "参考",
        "api_intro": (
            "znp REST API 的全部操作，由 `spec/openapi.yaml` 生成。请求体和响应体均为 JSON（`application/json`）。"
            "所有非 2xx 响应都携带错误信封 `{\"code\", \"error\", \"message\", \"details\", \"request_id\"}`，"
            "错误码见[错误码](error-codes.md)。路径中的 `{admin}` 是配置的管理前缀（`server.admin_prefix`，默认 `admin`）。"
            "访问级别为 *user* 或 *admin* 的操作需要请求头 `Authorization: Bearer <access token>`。"),
        "grpc_intro": "带有 gRPC 方法的操作以 protobuf 消息接收相同的字段；凭据放在 `authorization` 元数据键中。",
        "contents": "目录",
        "operation_id": "操作 ID",
        "access": "访问级别",
        "grpc": "gRPC 方法",
        "rate_limit": "限流",
        "rate_kinds": {"ip": "每个客户端地址", "user": "每个用户", "global": "所有客户端合计"},
        "rate_format": "{kind}每分钟 {per_minute} 次（突发 {burst} 次）",
        "access_names": {"ZNP_SEC_PUBLIC": "公开", "ZNP_SEC_USER": "user（任意已登录用户）",
                         "ZNP_SEC_ADMIN": "admin（管理员）"},
        "parameters": "参数",
        "request_body": "请求体",
        "required_body": "必填",
        "optional_body": "可选",
        "responses": "响应",
        "response_fields": "响应字段",
        "errors": "错误",
        "example": "示例",
        "request": "请求",
        "response": "响应",
        "col_name": "名称",
        "col_in": "位置",
        "col_field": "字段",
        "col_type": "类型",
        "col_required": "必填",
        "col_constraints": "约束",
        "col_description": "说明",
        "col_status": "状态码",
        "col_body": "响应体",
        "col_code": "错误码",
        "col_key": "键",
        "col_http": "HTTP",
        "col_grpc": "gRPC",
        "col_message": "消息",
        "yes": "是",
        "no": "否",
        "none": "无",
        "no_body": "无响应体",
        "read_only": "只读",
        "write_only": "只写",
        "secret": "敏感，不记录日志",
        "nullable": "可为 null",
        "errors_intro": "任何操作还可能返回[错误码](error-codes.md)中的通用错误，例如 `too_many_requests` 和 `internal`。",
        "no_errors": "此操作没有特有的错误。",
        "errors_title": "错误码",
        "errors_doc_intro": (
            "znp 的所有错误响应体均为 `{\"code\", \"error\", \"message\", \"details\", \"request_id\"}`。"
            "`code` 是稳定的六位数字，前三位为 HTTP 状态码；`error` 是稳定的错误键。"
            "消息语言由 `Accept-Language` 决定（英文或简体中文）。gRPC 调用返回表中的状态码和消息。"
            "由 `spec/errors.yaml` 生成。"),
        "in_names": {"path": "路径", "query": "查询"},
        "colon": "：",
        "body_line": "`{name}`，{required}。",
        "error_msg_key": "zh",
        "other_lang": "[English](../{file})",
    },
}

FORMAT_EXAMPLES = {
    "ZNP_FMT_EMAIL": "user@example.com",
    "ZNP_FMT_URI": "https://example.com/",
    "ZNP_FMT_DATE_TIME": "2025-01-01T00:00:00Z",
    "ZNP_FMT_UUID": "00000000-0000-4000-8000-000000000000",
    "ZNP_FMT_HOSTNAME": "example.com",
}


def cell(text):
    """Text that fits in one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def anchor(op):
    return "op-" + op.id.replace("_", "-")


def field_rows(st, labels, lang, direction, prefix=""):
    """Rows (name, type, required, constraints, description) of `st`, nested objects flattened."""
    rows = []
    for f in st.fields:
        if direction == "request" and f.read_only:
            continue
        if direction == "response" and f.write_only:
            continue
        notes = f.constraints(lang)
        if f.read_only:
            notes.append(labels["read_only"])
        if f.write_only:
            notes.append(labels["write_only"])
        if f.secret:
            notes.append(labels["secret"])
        name = prefix + f.name
        rows.append(("`%s`" % name, cell("`%s`" % f.doc_type), labels["yes"] if f.required else labels["no"],
                     cell("; ".join(notes)) if notes else "", cell(f.description)))
        if f.struct is not None and f.struct is not st:
            rows.extend(field_rows(f.struct, labels, lang, direction, name + "."))
        elif f.item is not None and f.item.struct is not None and f.item.struct is not st:
            rows.extend(field_rows(f.item.struct, labels, lang, direction, name + "[]."))
    return rows


def example_value(f, direction, depth):
    if f.has_example:
        return f.example
    if f.has_default:
        return f.default
    if f.enum:
        return f.enum[0]
    if f.type == "ZNP_FT_STRING":
        return FORMAT_EXAMPLES.get(f.format, "string")
    if f.type == "ZNP_FT_INT64":
        return f.min if f.min is not None and f.min > 0 else 1
    if f.type == "ZNP_FT_NUMBER":
        return f.min_number if f.min_number is not None else 1.5
    if f.type == "ZNP_FT_BOOL":
        return True
    if f.type == "ZNP_FT_JSON":
        return {}
    if f.type == "ZNP_FT_OBJECT":
        return example_object(f.struct, direction, depth + 1)
    if f.type == "ZNP_FT_ARRAY":
        item = f.item
        if item.type == "ZNP_FT_OBJECT":
            return [example_object(item.struct, direction, depth + 1)] if depth < 4 else []
        if item.enum:
            return [item.enum[0]]
        return ["string"] if item.type == "ZNP_FT_STRING" else [1]
    return None


def example_object(st, direction, depth=0):
    out = {}
    if depth > 4:
        return out
    for f in st.fields:
        if direction == "request" and f.read_only:
            continue
        if direction == "response" and f.write_only:
            continue
        out[f.name] = example_value(f, direction, depth)
    return out


def example_path(op):
    path = op.path.replace("{admin}", "admin")
    query = []
    for p in op.params:
        if p.field.has_example:
            value = p.field.example
        elif p.field.has_default:
            value = p.field.default
        elif p.field.type == "ZNP_FT_INT64":
            value = 1
        else:
            value = "value"
        if isinstance(value, bool):
            value = "true" if value else "false"
        if p.location == "path":
            path = path.replace("{%s}" % p.name, str(value))
        elif p.field.required:
            query.append("%s=%s" % (p.name, value))
    return path + ("?" + "&".join(query) if query else "")


def pretty(value):
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


class OpDoc:
    """Everything the template shows for one operation in one language."""

    def __init__(self, spec, op, labels, lang, op_errors):
        self.op = op
        self.anchor = anchor(op)
        self.summary = op.summary_zh if lang == "zh" and op.summary_zh else op.summary
        self.description = op.description_zh if lang == "zh" and op.description_zh else op.description
        self.access = labels["access_names"][op.security]
        self.grpc = ", ".join("`%s`" % r.path for r in op.grpc)
        self.rate_limit = "; ".join(
            labels["rate_format"].format(per_minute=op.rate_limit[kind][0], burst=op.rate_limit[kind][1],
                                         kind=labels["rate_kinds"][kind])
            for kind in ("ip", "user", "global") if op.rate_limit and kind in op.rate_limit)

        self.params = [("`%s`" % p.name, labels["in_names"][p.location], cell("`%s`" % p.field.doc_type),
                        labels["yes"] if p.field.required else labels["no"],
                        cell("; ".join(p.field.constraints(lang))), cell(p.field.description)) for p in op.params]
        self.body = op.body
        self.body_rows = field_rows(op.body, labels, lang, "request") if op.body else []
        required = labels["required_body"] if op.body_required else labels["optional_body"]
        self.body_line = labels["body_line"].format(name=op.body.name, required=required) if op.body else ""
        self.response_rows = field_rows(op.response, labels, lang, "response") if op.response else []
        self.responses = [(str(op.success_status), "`%s`" % op.response.name if op.response else labels["no_body"],
                           cell(op.success_description))]
        for status, description in sorted(op.other_responses, key=lambda r: (r[0] == "default", r[0])):
            self.responses.append((status, "`ErrorEnvelope`", cell(description)))
        self.errors = op_errors(spec, op)

        self.request_line = "%s %s" % (op.method, example_path(op))
        self.auth = op.security != "ZNP_SEC_PUBLIC"
        if op.body is not None:
            self.request_json = pretty(op.body_example if op.has_body_example else example_object(op.body, "request"))
        else:
            self.request_json = None
        if op.response is not None:
            value = op.response_example if op.has_response_example else example_object(op.response, "response")
            self.response_json = pretty(value)
        else:
            self.response_json = None


def render_docs(spec, env, api_files, err_files, op_errors, banner_text):
    outputs = {}
    for lang, prefix in (("en", "docs/"), ("zh", "docs/zh-CN/")):
        labels = LABELS[lang]
        groups = []
        for name, description, description_zh in spec.tags:
            ops = [OpDoc(spec, op, labels, lang, op_errors) for op in spec.operations if op.tag == name]
            ops.sort(key=lambda d: (d.op.path, d.op.method))
            groups.append((name, description_zh if lang == "zh" and description_zh else description, ops))
        template = "api-reference.md.j2"
        banner = "<!-- %s -->" % banner_text(spec.docs, api_files, template)
        text = env.get_template(template).render(
            banner=banner, t=labels, groups=groups, lang=lang, other=labels["other_lang"].format(file="api-reference.md"),
            title=spec.info.get("title", "API"), version=spec.info.get("version", ""))
        outputs[prefix + "api-reference.md"] = text.encode("utf-8")

        template = "error-codes.md.j2"
        banner = "<!-- %s -->" % banner_text(spec.docs, err_files, template)
        rows = sorted(spec.errors, key=lambda e: e.code)
        text = env.get_template(template).render(
            banner=banner, t=labels, errors=rows, lang=lang, other=labels["other_lang"].format(file="error-codes.md"))
        outputs[prefix + "error-codes.md"] = text.encode("utf-8")
    return outputs
