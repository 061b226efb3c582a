/* TEMPORARY weak stand-ins for ddm_schema.c while it is being written on
 * another branch; the real (strong) definitions replace these at link time.
 * Delete this file when ddm_schema.c lands. */
#include "ddm_schema.h"

#include <stdlib.h>
#include <string.h>

__attribute__((weak)) const ds_declaration_t *ddm_schema_find(const char *type)
{
    static const ds_declaration_t any = {.type = "", .kind = "configuration"};
    return strncmp(type, "com.apple.", 10) == 0 ? &any : NULL;
}

__attribute__((weak)) int ddm_schema_check(const char *type, const json_t *payload, char ***refs,
                                           const char ***ref_kinds, const char ***ref_assettypes, size_t *nrefs,
                                           char *err, size_t errlen)
{
    (void)type, (void)payload, (void)err, (void)errlen;
    *refs = NULL;
    *ref_kinds = NULL;
    *ref_assettypes = NULL;
    *nrefs = 0;
    return 0;
}

__attribute__((weak)) void ddm_schema_refs_free(char **refs, const char **ref_kinds, const char **ref_assettypes,
                                                size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(refs[i]);
    free(refs);
    free(ref_kinds);
    free(ref_assettypes);
}

__attribute__((weak)) int ddm_status_item_known(const char *name)
{
    (void)name;
    return 0;
}

__attribute__((weak)) int mdm_command_on_watchos(const char *request_type)
{
    (void)request_type;
    return -1;
}

__attribute__((weak)) int mdm_payload_on_watchos(const char *payload_type)
{
    (void)payload_type;
    return -1;
}
