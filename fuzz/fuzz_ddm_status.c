/* libFuzzer target: ddm_status_parse and ddm_status_merge_array (the Data of
 * a DeclarativeManagement "status" check-in, a device's StatusReport JSON).
 *
 * The input is the report as the device would send it. For a report the
 * parser accepts, the harness checks what ddm_status_apply relies on:
 * - at most DDM_STATUS_MAX_ITEMS items, each named by 1..DDM_STATUS_MAX_NAME
 *   octets of non-empty dot-separated segments, never management.declarations
 *   (that becomes declaration rows), each value printable as JSON;
 * - at most DDM_STATUS_MAX_DECLS declaration rows, each with an identifier
 *   and server token of 1..64 octets, a known kind, valid in
 *   {valid, invalid, unknown}, reasons (if any) a JSON array;
 * - a keyed array merged into nothing, and into itself (as if stored
 *   before), leaves no "_removed": true element and no identifier twice.
 * A refused report must come with a message and leave nothing allocated.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_ddm_status.c src/ddm_status.c \
 *       src/ddm_schema.c src/ddm_schema_table.c src/store.c src/log.c src/util.c ... $(pkg-config ...)
 * (fuzz/run.sh links every src file, which also works.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ddm.h"
#include "ddm_status.h"

static void check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > DDM_STATUS_MAX_NAME || name[0] == '.' || name[n - 1] == '.' || strstr(name, "..") ||
        strcmp(name, "management.declarations") == 0) {
        fprintf(stderr, "bad status item name '%s'\n", name);
        abort();
    }
}

static int short_string_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= DDM_IDENTIFIER_MAX;
}

static void check_decl(const ddm_decl_status_t *d)
{
    int kind_ok = d->kind && (strcmp(d->kind, DDM_KIND_ACTIVATION) == 0 || strcmp(d->kind, DDM_KIND_CONFIGURATION) == 0 ||
                              strcmp(d->kind, DDM_KIND_ASSET) == 0 || strcmp(d->kind, DDM_KIND_MANAGEMENT) == 0);
    int valid_ok = d->valid && (strcmp(d->valid, "valid") == 0 || strcmp(d->valid, "invalid") == 0 ||
                                strcmp(d->valid, "unknown") == 0);
    if (!short_string_ok(d->identifier) || !short_string_ok(d->server_token) || !kind_ok || !valid_ok)
        abort();
    if (d->reasons_json) {
        json_t *r = json_loads(d->reasons_json, 0, NULL);
        if (!json_is_array(r) || json_array_size(r) == 0)
            abort();
        json_decref(r);
    }
}

/* After a merge: no removal marker survives, each identifier once. */
static void check_merged(const json_t *arr)
{
    if (!json_is_array(arr))
        abort();
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        const json_t *el = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(el, "identifier"));
        if (!id || json_is_true(json_object_get(el, "_removed")))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(id, json_string_value(json_object_get(json_array_get(arr, j), "identifier"))) == 0)
                abort();
    }
}

static void check_item(const ddm_status_value_t *it)
{
    check_name(it->name);
    if (!it->value)
        abort();
    char *text = json_dumps(it->value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        abort();
    free(text);
    if (!it->keyed)
        return;
    if (!json_is_array(it->value) || json_array_size(it->value) == 0)
        abort();
    json_t *fresh = ddm_status_merge_array(json_array(), it->value);
    if (fresh)
        check_merged(fresh);
    json_decref(fresh);
    json_t *again = ddm_status_merge_array(json_deep_copy(it->value), it->value);
    if (again)
        check_merged(again);
    json_decref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ddm_status_report_t r;
    char err[256] = "";
    int code = ddm_status_parse(data, size, &r, err, sizeof err);
    if (code != 200) {
        if ((code != 400 && code != 413 && code != 503) || err[0] == '\0' || r.items || r.decls || r.errors_json)
            abort();
        return 0;
    }
    if (r.nitems > DDM_STATUS_MAX_ITEMS || r.ndecls > DDM_STATUS_MAX_DECLS)
        abort();
    for (size_t i = 0; i < r.nitems; i++)
        check_item(&r.items[i]);
    for (size_t i = 0; i < r.ndecls; i++)
        check_decl(&r.decls[i]);
    if (r.ndecls && !r.has_declarations)
        abort();
    if (r.errors_json) {
        json_t *e = json_loads(r.errors_json, 0, NULL);
        if (!json_is_array(e) || json_array_size(e) == 0)
            abort();
        json_decref(e);
    }
    ddm_status_report_free(&r);
    return 0;
}
