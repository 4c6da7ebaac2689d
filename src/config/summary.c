/*
 * The check-config summary: every key, its value and its source, with
 * secrets and the DSN password masked.
 */
#include "config/config.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "config/internal.h"

static int is_password_option(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* Append `text` to out, quoted as libpq expects when it is empty or has spaces, quotes or backslashes. */
static void append_conninfo_value(char *out, size_t out_size, const char *text)
{
    size_t len = strlen(out);
    int quote = text[0] == '\0' || strpbrk(text, " \t'\\") != NULL;

    if (quote && len + 1 < out_size)
        out[len++] = '\'';
    for (const char *p = text; *p != '\0' && len + 2 < out_size; p++) {
        if (*p == '\'' || *p == '\\')
            out[len++] = '\\';
        out[len++] = *p;
    }
    if (quote && len + 1 < out_size)
        out[len++] = '\'';
    out[len] = '\0';
}

/* The DSN as keyword=value pairs with the password replaced by ****. */
static void mask_dsn(char *out, size_t out_size, const char *dsn)
{
    PQconninfoOption *options = PQconninfoParse(dsn, NULL);

    out[0] = '\0';
    if (options == NULL) {
        snprintf(out, out_size, "**** (not a valid connection string)");
        return;
    }
    for (PQconninfoOption *option = options; option->keyword != NULL; option++) {
        size_t len = strlen(out);

        if (option->val == NULL)
            continue;
        snprintf(out + len, out_size - len, "%s%s=", len > 0 ? " " : "", option->keyword);
        if (is_password_option(option->keyword))
            append_conninfo_value(out, out_size, "****");
        else
            append_conninfo_value(out, out_size, option->val);
    }
    PQconninfoFree(options);
}

static void format_origin(char *out, size_t out_size, const znp_config_t *config, const config__origin_t *origin)
{
    switch (origin->kind) {
    case CONFIG_FROM_FILE:
        snprintf(out, out_size, "%s:%u", config->source_path ? config->source_path : "file", origin->line);
        return;
    case CONFIG_FROM_ENV:
        snprintf(out, out_size, "env %s", origin->label);
        return;
    case CONFIG_FROM_OVERRIDE:
        snprintf(out, out_size, "%s", origin->label);
        return;
    default:
        snprintf(out, out_size, "default");
        return;
    }
}

void znp_config_print_summary(const znp_config_t *config, FILE *out)
{
    size_t count;
    const config__key_t *keys = config__keys(&count);

    fprintf(out, "configuration: %s\n", config->source_path ? config->source_path : "(built-in defaults)");
    for (size_t i = 0; i < count; i++) {
        const config__key_t *key = &keys[i];
        const char *text = key->value->type == CYAML_STRING ? *(char *const *)config__member(config, key) : NULL;
        char value[1024];
        char origin[320];

        if ((key->flags & CONFIG_SECRET) && text != NULL)
            snprintf(value, sizeof value, "**** (%zu bytes)", strlen(text));
        else if (key->flags & CONFIG_GENERATED)
            snprintf(value, sizeof value,
                     "(not set: znp serve keeps a generated one in database.data_dir/secrets.yaml)");
        else if ((key->flags & CONFIG_DSN) && text != NULL)
            mask_dsn(value, sizeof value, text);
        else if (key->flags & CONFIG_DSN)
            snprintf(value, sizeof value, "(not set: embedded PostgreSQL under database.data_dir)");
        else if (text != NULL && text[0] == '\0')
            snprintf(value, sizeof value, "\"\"");
        else
            config__format_value(value, sizeof value, config, key);
        format_origin(origin, sizeof origin, config, &config->origins->items[i]);
        fprintf(out, "  %-30s %s  (%s)\n", key->path, value, origin);
    }
}
