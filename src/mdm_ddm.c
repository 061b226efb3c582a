/* DeclarativeManagement check-in: the device side of declarative device
 * management (docs: ddm.h for the model, ddm_status.h for status reports).
 *
 *   Endpoint "tokens"                          → TokensResponse JSON
 *   Endpoint "declaration-items"               → the manifest (all four arrays, always)
 *   Endpoint "declaration/<kind>/<Identifier>" → that declaration, if it is in this
 *                                                channel's effective set and of that kind;
 *                                                404 otherwise (the device then drops it)
 *   Endpoint "status"                          → Data = StatusReport JSON; 200, empty body
 *
 * Each channel (device, or a user channel) has its own effective set and
 * DeclarationsToken: everything is looked up by the message's channel id.
 * Endpoints are matched exactly: an unknown one is a 400, not a 404, so a
 * device bug is not mistaken for a removed declaration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ddm.h"
#include "ddm_status.h"
#include "log.h"
#include "mdm_checkin.h"
#include "util.h"

/* "declaration/configuration/" + a 64-octet identifier, with room to spare;
 * longer Endpoints are refused before any parsing. */
#define ENDPOINT_MAX 128

static void reply_json(http_response_t *resp, json_t *j)
{
    if (!j) {
        http_refuse(resp, 503, 0, "out of memory or storage error building the reply");
        return;
    }
    http_reply_json(resp, 200, j);
}

static void free_decls(declaration_t *decls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        declaration_free(&decls[i]);
    free(decls);
}

/* The manifest array a kind goes into. */
static const char *manifest_key(const char *kind)
{
    if (strcmp(kind, DDM_KIND_ACTIVATION) == 0)
        return "Activations";
    if (strcmp(kind, DDM_KIND_CONFIGURATION) == 0)
        return "Configurations";
    if (strcmp(kind, DDM_KIND_ASSET) == 0)
        return "Assets";
    if (strcmp(kind, DDM_KIND_MANAGEMENT) == 0)
        return "Management";
    return NULL;
}

static void endpoint_items(worker_t *w, const mdm_message_t *m, http_response_t *resp)
{
    store_t *s = w->store;
    declaration_t *decls = NULL;
    size_t n = 0;
    char token[33];
    if (ddm_effective_for(s, m->id, &decls, &n, token) != 0) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    json_t *lists = json_pack("{s:[],s:[],s:[],s:[]}", "Activations", "Configurations", "Assets", "Management");
    for (size_t i = 0; lists && i < n; i++) {
        const char *key = manifest_key(decls[i].kind);
        if (key)
            json_array_append_new(json_object_get(lists, key),
                                  json_pack("{s:s,s:s}", "Identifier", decls[i].identifier, "ServerToken",
                                            decls[i].server_token));
    }
    free_decls(decls, n);
    if (s->ops->ddm_touch && s->ops->ddm_touch(s, m->id, util_now()) != STORE_OK)
        log_warn("cannot record the manifest fetch of %s: %s", m->id, s->ops->errmsg(s));
    reply_json(resp, lists ? json_pack("{s:o,s:s}", "Declarations", lists, "DeclarationsToken", token) : NULL);
}

/* "declaration/<kind>/<Identifier>": 404 unless that declaration is in this
 * channel's effective set with that kind. */
static void endpoint_declaration(worker_t *w, const mdm_message_t *m, const char *rest, http_response_t *resp)
{
    const char *slash = strchr(rest, '/');
    if (!slash) {
        http_refuse(resp, 400, 0, "DeclarativeManagement: Endpoint 'declaration/%.64s' needs a kind and an Identifier",
                    rest);
        return;
    }
    char kind[16];
    size_t klen = (size_t)(slash - rest);
    const char *ident = slash + 1;
    if (klen >= sizeof kind) {
        http_refuse(resp, 400, 0, "DeclarativeManagement: unknown declaration kind in Endpoint");
        return;
    }
    memcpy(kind, rest, klen);
    kind[klen] = '\0';
    if (!manifest_key(kind)) {
        http_refuse(resp, 400, 0, "DeclarativeManagement: unknown declaration kind '%s' in Endpoint", kind);
        return;
    }
    size_t ilen = strlen(ident);
    if (ilen == 0 || ilen > DDM_IDENTIFIER_MAX || strchr(ident, '/')) {
        http_refuse(resp, 400, 0,
                    "DeclarativeManagement: declaration Identifier in Endpoint must be 1 to %d octets without '/'",
                    DDM_IDENTIFIER_MAX);
        return;
    }
    store_t *s = w->store;
    declaration_t *decls = NULL;
    size_t n = 0;
    char token[33];
    if (ddm_effective_for(s, m->id, &decls, &n, token) != 0) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    const declaration_t *found = NULL;
    for (size_t i = 0; i < n && !found; i++)
        if (strcmp(decls[i].identifier, ident) == 0 && strcmp(decls[i].kind, kind) == 0)
            found = &decls[i];
    if (found)
        reply_json(resp, ddm_declaration_json(found));
    else
        http_refuse(resp, 404, 0, "DeclarativeManagement: no %s declaration '%s' for this enrollment", kind, ident);
    free_decls(decls, n);
}

static void endpoint_status(worker_t *w, const mdm_message_t *m, http_response_t *resp)
{
    size_t len = 0;
    const unsigned char *data = plist_dict_get_data(m->root, "Data", &len);
    if (!data) {
        http_refuse(resp, 400, 0, "DeclarativeManagement: status without Data");
        return;
    }
    char why[256];
    int code = ddm_status_apply(w->store, m->id, data, len, util_now(), why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "DeclarativeManagement: %s", why);
        return;
    }
    http_reply(resp, 200, NULL, NULL, 0);
}

void mdm_checkin_declarative_management(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                        const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    const char *endpoint = plist_dict_get_string(m->root, "Endpoint");
    size_t elen = endpoint ? strlen(endpoint) : 0;
    if (!endpoint || elen == 0 || elen > ENDPOINT_MAX) {
        http_refuse(resp, 400, 0, "DeclarativeManagement: Endpoint must be 1 to %d characters", ENDPOINT_MAX);
        return;
    }
    for (const char *c = endpoint; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            http_refuse(resp, 400, 0, "DeclarativeManagement: Endpoint contains a control character");
            return;
        }
    char type[96];
    snprintf(type, sizeof type, "DeclarativeManagement %.70s", endpoint);
    HTTP_LOG(resp, log_type, type);

    char why[256];
    enrollment_t dev;
    int code = mdm_authorize(w, ident, m->device_id, &dev, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    code = mdm_channel_active(w, m, &dev, NULL, NULL, why, sizeof why);
    enrollment_free(&dev);
    if (code) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }

    if (strcmp(endpoint, "tokens") == 0) {
        reply_json(resp, ddm_tokens_response(w->store, m->id));
    } else if (strcmp(endpoint, "declaration-items") == 0) {
        endpoint_items(w, m, resp);
    } else if (strncmp(endpoint, "declaration/", 12) == 0) {
        endpoint_declaration(w, m, endpoint + 12, resp);
    } else if (strcmp(endpoint, "status") == 0) {
        endpoint_status(w, m, resp);
    } else {
        http_refuse(resp, 400, 0, "DeclarativeManagement: unknown Endpoint '%.64s'", endpoint);
    }
}
