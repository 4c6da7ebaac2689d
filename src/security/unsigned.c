/*
 * The signed API check for transports without signature headers (gRPC).
 * Kept apart from signed.c because it reads the generated route table.
 */
#include "security/security.h"

#include <string.h>

#include "core/dispatch.h"
#include "core/router.h"
#include "protect/protect.h"

/* The route group of an operation, from its path template in the route table. */
static int group_of_operation(const znp_operation_t *op)
{
    static const char admin_template[] = "/api/v1/{admin}";

    for (size_t i = 0; i < znp_route_count; i++) {
        const char *path = znp_routes[i].path;

        if (znp_routes[i].operation != op)
            continue;
        if (strncmp(path, admin_template, sizeof admin_template - 1) == 0 &&
            (path[sizeof admin_template - 1] == '\0' || path[sizeof admin_template - 1] == '/'))
            return ZNP_GROUP_ADMIN;
        return (int)znp_protect_group_of(path, strlen(path), NULL);
    }
    return ZNP_GROUP_PUBLIC;
}

int znp_security_verify_unsigned(znp_ctx_t *ctx, const znp_operation_t *op, znp_call_t *call)
{
    (void)call;
    if (!znp_security_signing_required(group_of_operation(op)))
        return 0;
    return znp_error_set(ctx->err, ZNP_E_SIGNATURE_HEADERS_MISSING, NULL,
                         "this route group accepts only signed HTTP requests");
}
