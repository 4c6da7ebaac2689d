/*
 * /docs: the Swagger UI from an unpacked swagger-ui-dist package in
 * server.docs_dir. The index page and its initializer are generated here,
 * so they always load /openapi.json. The package's own files (CSS, bundle)
 * are served from the directory by h2o's file handler. Without the package, /docs
 * responds with a page that explains how to install it.
 */
#include "http/internal.h"

#include <stdio.h>
#include <unistd.h>

static const char html_content_type[] = "text/html; charset=utf-8";
static const char js_content_type[] = "text/javascript; charset=utf-8";

static const char index_page[] = "<!DOCTYPE html>\n"
                                 "<html lang=\"en\">\n"
                                 "<head>\n"
                                 "<meta charset=\"utf-8\">\n"
                                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                                 "<title>znp API</title>\n"
                                 "<link rel=\"stylesheet\" href=\"swagger-ui.css\">\n"
                                 "</head>\n"
                                 "<body>\n"
                                 "<div id=\"swagger-ui\"></div>\n"
                                 "<script src=\"swagger-ui-bundle.js\"></script>\n"
                                 "<script src=\"swagger-initializer.js\"></script>\n"
                                 "</body>\n"
                                 "</html>\n";

static const char initializer_script[] = "window.onload = function () {\n"
                                         "  window.ui = SwaggerUIBundle({\n"
                                         "    url: \"/openapi.json\",\n"
                                         "    dom_id: \"#swagger-ui\",\n"
                                         "    deepLinking: true\n"
                                         "  });\n"
                                         "};\n";

static const char missing_page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<title>znp API documentation</title>\n"
    "</head>\n"
    "<body>\n"
    "<h1>The API documentation viewer is not installed</h1>\n"
    "<p>znp serves the Swagger UI from the directory named by <code>server.docs_dir</code>, and the files of the "
    "swagger-ui-dist package were not found there when the server started.</p>\n"
    "<p>Run <code>scripts/setup.sh</code>, which fetches swagger-ui-dist with <code>npm pack</code> (see the "
    "README), or unpack that package yourself and set <code>server.docs_dir</code> to its <code>package</code> "
    "directory. Then restart znp.</p>\n"
    "<p>The OpenAPI document itself is available now at <a href=\"/openapi.json\">/openapi.json</a>.</p>\n"
    "<hr>\n"
    "<div lang=\"zh-CN\">\n"
    "<h1>API 文档查看器尚未安装</h1>\n"
    "<p>znp 从 <code>server.docs_dir</code> 指定的目录提供 Swagger UI，但服务器启动时在该目录中没有找到 "
    "swagger-ui-dist 包的文件。</p>\n"
    "<p>请运行 <code>scripts/setup.sh</code>（它通过 <code>npm pack</code> 获取 swagger-ui-dist，详见 README），"
    "或自行解压该包并将 <code>server.docs_dir</code> 设置为其中的 <code>package</code> 目录，然后重启 znp。</p>\n"
    "<p>OpenAPI 文档本身现在即可访问：<a href=\"/openapi.json\">/openapi.json</a>。</p>\n"
    "</div>\n"
    "</body>\n"
    "</html>\n";

/* Whether `docs_dir` contains the two files the generated index page loads. */
int znp_http__docs_available(const char *docs_dir)
{
    static const char *const required[] = {"swagger-ui-bundle.js", "swagger-ui.css"};
    char path[4096];

    if (docs_dir == NULL || docs_dir[0] == '\0')
        return 0;
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        int len = snprintf(path, sizeof(path), "%s/%s", docs_dir, required[i]);

        if (len < 0 || (size_t)len >= sizeof(path) || access(path, R_OK) != 0)
            return 0;
    }
    return 1;
}

void znp_http__send_docs_missing(h2o_req_t *req)
{
    znp_http__send_body(req, 200, html_content_type, h2o_iovec_init(missing_page, sizeof(missing_page) - 1));
}

int znp_http__on_docs_request(h2o_handler_t *self, h2o_req_t *req)
{
    znp_http_request_t *state = znp_http__begin_request(req, "/docs", 0);
    h2o_iovec_t path = req->path_normalized;

    (void)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        znp_http__send_error(req, state, ZNP_E_METHOD_NOT_ALLOWED, "GET, HEAD");
        return 0;
    }

    /* the index page loads its files by relative URL, so it must be seen under /docs/ */
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/docs"))) {
        h2o_send_redirect(req, 301, "Moved Permanently", H2O_STRLIT("/docs/"));
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/docs/")) ||
        h2o_memis(path.base, path.len, H2O_STRLIT("/docs/index.html"))) {
        znp_http__send_body(req, 200, html_content_type, h2o_iovec_init(index_page, sizeof(index_page) - 1));
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/docs/swagger-initializer.js"))) {
        znp_http__send_body(req, 200, js_content_type,
                            h2o_iovec_init(initializer_script, sizeof(initializer_script) - 1));
        return 0;
    }
    return -1; /* a file of the package: h2o's file handler, registered after this one */
}
