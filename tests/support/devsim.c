/* Device simulator (see devsim.h). */
#include "devsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/pem.h>

#include "curl_buffer.h"
#include "testpki.h"
#include "util.h"

struct devsim {
    CURL *curl;
    char *base_url;
    char *udid;
    EVP_PKEY *key;
    X509 *cert;
    devsim_auth_t auth;
    char *cert_pem, *key_pem;
    char *header_name;
    int header_kind;
    char *checkin_path, *connect_path;
    int quiet; /* no stderr line per transport failure */
    /* DDM (devsim_set_user_channel, devsim_ddm_*) */
    char *user_id, *user_short_name;
    struct ddm_decl *decls;
    size_t ndecls;
    char *ddm_token;
};

struct ddm_decl {
    char *identifier, *kind, *server_token, *json;
    char *failure; /* reason code to report, NULL = fine */
};

static void ddm_decl_clear(struct ddm_decl *x)
{
    free(x->identifier);
    free(x->kind);
    free(x->server_token);
    free(x->json);
    free(x->failure);
}

static char *key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        /* The BIO's buffer is not NUL-terminated: copy exactly n bytes. */
        out = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (out) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

devsim_t *devsim_new(const char *base_url, const char *server_ca, const char *udid, EVP_PKEY *key, X509 *cert,
                     devsim_auth_t auth)
{
    devsim_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->curl = curl_easy_init();
    d->base_url = strdup(base_url);
    d->udid = strdup(udid);
    d->auth = auth;
    d->checkin_path = strdup("/mdm/checkin");
    d->connect_path = strdup("/mdm/connect");
    if (key) {
        EVP_PKEY_up_ref(key);
        d->key = key;
        d->key_pem = key_pem(key);
    }
    if (cert) {
        X509_up_ref(cert);
        d->cert = cert;
        d->cert_pem = testpki_cert_pem(cert);
    }
    if (!d->curl || !d->base_url || !d->udid) {
        devsim_free(d);
        return NULL;
    }
    curl_easy_setopt(d->curl, CURLOPT_CAINFO, server_ca);
    curl_easy_setopt(d->curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(d->curl, CURLOPT_NOSIGNAL, 1L);
    if ((auth == DEVSIM_AUTH_MTLS || auth == DEVSIM_AUTH_BOTH) && d->cert_pem && d->key_pem) {
        struct curl_blob cb = {d->cert_pem, strlen(d->cert_pem), CURL_BLOB_COPY};
        struct curl_blob kb = {d->key_pem, strlen(d->key_pem), CURL_BLOB_COPY};
        curl_easy_setopt(d->curl, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(d->curl, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(d->curl, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(d->curl, CURLOPT_SSLKEYTYPE, "PEM");
    }
    return d;
}

void devsim_free(devsim_t *d)
{
    if (!d)
        return;
    if (d->curl)
        curl_easy_cleanup(d->curl);
    free(d->base_url);
    free(d->udid);
    EVP_PKEY_free(d->key);
    X509_free(d->cert);
    free(d->cert_pem);
    free(d->key_pem);
    free(d->header_name);
    free(d->checkin_path);
    free(d->connect_path);
    free(d->user_id);
    free(d->user_short_name);
    for (size_t i = 0; i < d->ndecls; i++)
        ddm_decl_clear(&d->decls[i]);
    free(d->decls);
    free(d->ddm_token);
    free(d);
}

void devsim_set_header(devsim_t *d, const char *name, int value_kind)
{
    free(d->header_name);
    d->header_name = strdup(name);
    d->header_kind = value_kind;
}

void devsim_set_paths(devsim_t *d, const char *checkin, const char *connect)
{
    free(d->checkin_path);
    free(d->connect_path);
    d->checkin_path = strdup(checkin);
    d->connect_path = strdup(connect);
}

void devsim_set_quiet(devsim_t *d, int quiet)
{
    d->quiet = quiet;
}

const char *devsim_udid(const devsim_t *d)
{
    return d->udid;
}

static int send_raw(devsim_t *d, const char *path, const char *content_type, const void *body, size_t len,
                    const void *signed_body, size_t signed_len, devsim_reply_t *r)
{
    memset(r, 0, sizeof *r);
    struct curl_slist *h = NULL;
    char *line = NULL;
    h = curl_slist_append(h, content_type ? content_type : "Content-Type: application/x-apple-aspen-mdm");
    if ((d->auth == DEVSIM_AUTH_SIGNATURE || d->auth == DEVSIM_AUTH_BOTH) && d->cert && d->key) {
        char *sig = testpki_mdm_signature(d->cert, d->key, signed_body, signed_len);
        line = sig ? util_strdup_printf("Mdm-Signature: %s", sig) : NULL;
        free(sig);
        if (line)
            h = curl_slist_append(h, line);
        free(line);
    } else if (d->auth == DEVSIM_AUTH_HEADER && d->cert && d->header_name) {
        char *v = d->header_kind == 1 ? testpki_cert_rfc9440(d->cert) : testpki_cert_escaped_pem(d->cert);
        line = v ? util_strdup_printf("%s: %s", d->header_name, v) : NULL;
        free(v);
        if (line)
            h = curl_slist_append(h, line);
        free(line);
    }
    char *url = util_strdup_printf("%s%s", d->base_url, path);
    curl_buffer_t s = {0};
    curl_easy_setopt(d->curl, CURLOPT_URL, url);
    curl_easy_setopt(d->curl, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(d->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(d->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(d->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(d->curl, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(d->curl, CURLOPT_WRITEDATA, &s);
    CURLcode rc = curl_easy_perform(d->curl);
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    free(url);
    if (rc != CURLE_OK) {
        if (!d->quiet)
            fprintf(stderr, "devsim: %s: %s\n", path, curl_easy_strerror(rc));
        free(s.data);
        r->status = -1;
        return -1;
    }
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = s.data;
    r->body_len = s.len;
    if (r->status == 200 && s.len > 0)
        r->command = plist_parse(s.data, s.len, NULL, 0);
    return 0;
}

int devsim_send(devsim_t *d, const char *path, const char *content_type, const void *body, size_t len,
                devsim_reply_t *r)
{
    return send_raw(d, path, content_type, body, len, body, len, r);
}

int devsim_send_signed_other(devsim_t *d, const char *path, const void *body, size_t len, const void *signed_body,
                             size_t signed_len, devsim_reply_t *r)
{
    return send_raw(d, path, NULL, body, len, signed_body, signed_len, r);
}

void devsim_reply_free(devsim_reply_t *r)
{
    free(r->body);
    plist_free(r->command);
    memset(r, 0, sizeof *r);
}

char *devsim_plist_xml(const plist_t *p, size_t *len)
{
    return plist_to_xml(p, len);
}

static long send_checkin(devsim_t *d, plist_t *msg)
{
    size_t len = 0;
    char *xml = plist_to_xml(msg, &len);
    plist_free(msg);
    if (!xml)
        return -1;
    devsim_reply_t r;
    send_raw(d, d->checkin_path, "Content-Type: application/x-apple-aspen-mdm-checkin", xml, len, xml, len, &r);
    free(xml);
    long status = r.status;
    devsim_reply_free(&r);
    return status;
}

/* The user-channel keys, when this devsim speaks for a user. */
static void add_user_keys(const devsim_t *d, plist_t *m)
{
    if (!d->user_id)
        return;
    plist_dict_set(m, "UserID", plist_new_string(d->user_id));
    plist_dict_set(m, "UserShortName", plist_new_string(d->user_short_name));
    plist_dict_set(m, "UserLongName", plist_new_string("Simulated User"));
}

static plist_t *message(devsim_t *d, const char *type)
{
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "MessageType", plist_new_string(type));
    plist_dict_set(m, "UDID", plist_new_string(d->udid));
    plist_dict_set(m, "Topic", plist_new_string("com.apple.mgmt.External.orchard-test"));
    add_user_keys(d, m);
    return m;
}

long devsim_authenticate(devsim_t *d)
{
    plist_t *m = message(d, "Authenticate");
    plist_dict_set(m, "SerialNumber", plist_new_string("SIM-SERIAL-0001"));
    plist_dict_set(m, "Model", plist_new_string("iPhone16,1"));
    plist_dict_set(m, "ModelName", plist_new_string("iPhone"));
    plist_dict_set(m, "ProductName", plist_new_string("iPhone16,1"));
    plist_dict_set(m, "OSVersion", plist_new_string("18.1"));
    plist_dict_set(m, "BuildVersion", plist_new_string("22B83"));
    plist_dict_set(m, "DeviceName", plist_new_string("Simulated iPhone"));
    plist_dict_set(m, "IMEI", plist_new_string("35 000000 000000 0"));
    return send_checkin(d, m);
}

long devsim_token_update(devsim_t *d)
{
    static const unsigned char token[32] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
    return devsim_token_update_with(d, token, sizeof token, "8F6E0D4C-SIMULATED-PUSH-MAGIC");
}

long devsim_token_update_with(devsim_t *d, const unsigned char *token, size_t token_len, const char *push_magic)
{
    static const unsigned char unlock[16] = {9, 8, 7, 6};
    plist_t *m = message(d, "TokenUpdate");
    plist_dict_set(m, "Token", plist_new_data(token, token_len));
    plist_dict_set(m, "PushMagic", plist_new_string(push_magic));
    plist_dict_set(m, "UnlockToken", plist_new_data(unlock, sizeof unlock));
    return send_checkin(d, m);
}

long devsim_user_token_update(devsim_t *d, const char *user_id, const char *short_name)
{
    static const unsigned char token[32] = {0xab, 0xcd};
    plist_t *m = message(d, "TokenUpdate");
    plist_dict_set(m, "Token", plist_new_data(token, sizeof token));
    plist_dict_set(m, "PushMagic", plist_new_string("USER-PUSH-MAGIC"));
    plist_dict_set(m, "UserID", plist_new_string(user_id));
    plist_dict_set(m, "UserShortName", plist_new_string(short_name));
    plist_dict_set(m, "UserLongName", plist_new_string("Simulated User"));
    return send_checkin(d, m);
}

long devsim_checkout(devsim_t *d)
{
    return send_checkin(d, message(d, "CheckOut"));
}

static int send_connect(devsim_t *d, plist_t *msg, devsim_reply_t *r)
{
    size_t len = 0;
    char *xml = plist_to_xml(msg, &len);
    plist_free(msg);
    if (!xml) {
        memset(r, 0, sizeof *r);
        r->status = -1;
        return -1;
    }
    int rc = send_raw(d, d->connect_path, NULL, xml, len, xml, len, r);
    free(xml);
    return rc;
}

int devsim_idle(devsim_t *d, devsim_reply_t *r)
{
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "UDID", plist_new_string(d->udid));
    plist_dict_set(m, "Status", plist_new_string("Idle"));
    add_user_keys(d, m);
    return send_connect(d, m, r);
}

int devsim_report(devsim_t *d, const char *uuid, const char *status, plist_t *extra, devsim_reply_t *r)
{
    /* The result's own keys go in the same dict as the envelope. */
    plist_t *m = extra ? extra : plist_new_dict();
    plist_dict_set(m, "UDID", plist_new_string(d->udid));
    plist_dict_set(m, "CommandUUID", plist_new_string(uuid));
    plist_dict_set(m, "Status", plist_new_string(status));
    add_user_keys(d, m);
    return send_connect(d, m, r);
}

const char *devsim_command_uuid(const devsim_reply_t *r)
{
    return r->command ? plist_dict_get_string(r->command, "CommandUUID") : NULL;
}

const char *devsim_request_type(const devsim_reply_t *r)
{
    const plist_t *c = r->command ? plist_dict_get(r->command, "Command") : NULL;
    return c ? plist_dict_get_string(c, "RequestType") : NULL;
}

/* ---- DDM client ---------------------------------------------------------------- */

void devsim_set_user_channel(devsim_t *d, const char *user_id, const char *short_name)
{
    free(d->user_id);
    free(d->user_short_name);
    d->user_id = user_id ? strdup(user_id) : NULL;
    d->user_short_name = short_name ? strdup(short_name) : NULL;
}

long devsim_ddm_checkin(devsim_t *d, const char *endpoint, const void *data, size_t len, devsim_reply_t *r)
{
    plist_t *m = message(d, "DeclarativeManagement");
    plist_dict_set(m, "Endpoint", plist_new_string(endpoint));
    if (data)
        plist_dict_set(m, "Data", plist_new_data(data, len));
    size_t xlen = 0;
    char *xml = plist_to_xml(m, &xlen);
    plist_free(m);
    memset(r, 0, sizeof *r);
    if (!xml) {
        r->status = -1;
        return -1;
    }
    send_raw(d, d->checkin_path, "Content-Type: application/x-apple-aspen-mdm-checkin", xml, xlen, xml, xlen, r);
    free(xml);
    /* The answers are JSON, not command plists. */
    plist_free(r->command);
    r->command = NULL;
    return r->status;
}

static struct ddm_decl *ddm_find(const devsim_t *d, const char *identifier)
{
    for (size_t i = 0; i < d->ndecls; i++)
        if (strcmp(d->decls[i].identifier, identifier) == 0)
            return &d->decls[i];
    return NULL;
}

static void ddm_drop(devsim_t *d, const char *identifier)
{
    struct ddm_decl *x = ddm_find(d, identifier);
    if (!x)
        return;
    ddm_decl_clear(x);
    *x = d->decls[--d->ndecls];
}

static int ddm_store(devsim_t *d, const char *identifier, const char *kind, const char *token, const char *json)
{
    struct ddm_decl *x = ddm_find(d, identifier);
    if (!x) {
        struct ddm_decl *grown = realloc(d->decls, (d->ndecls + 1) * sizeof *grown);
        if (!grown)
            return -1;
        d->decls = grown;
        x = &d->decls[d->ndecls++];
        memset(x, 0, sizeof *x);
        x->identifier = strdup(identifier);
    }
    free(x->kind);
    free(x->server_token);
    free(x->json);
    x->kind = strdup(kind);
    x->server_token = strdup(token);
    x->json = strdup(json);
    return x->identifier && x->kind && x->server_token && x->json ? 0 : -1;
}

static json_t *reply_json(const devsim_reply_t *r)
{
    return r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

static const struct {
    const char *manifest_key, *kind, *status_key;
} ddm_kinds[] = {
    {"Activations", "activation", "activations"},
    {"Configurations", "configuration", "configurations"},
    {"Assets", "asset", "assets"},
    {"Management", "management", "management"},
};

/* Fetches one declaration; 1 stored, 0 removed (404), -1 failure. */
static int ddm_fetch(devsim_t *d, const char *kind, const char *identifier, const char *want_token)
{
    char *ep = util_strdup_printf("declaration/%s/%s", kind, identifier);
    devsim_reply_t r;
    long st = ep ? devsim_ddm_checkin(d, ep, NULL, 0, &r) : -1;
    free(ep);
    int out = -1;
    if (st == 404) {
        ddm_drop(d, identifier);
        out = 0;
    } else if (st == 200) {
        json_t *j = reply_json(&r);
        const char *id = json_string_value(json_object_get(j, "Identifier"));
        const char *tok = json_string_value(json_object_get(j, "ServerToken"));
        if (id && tok && strcmp(id, identifier) == 0 && strcmp(tok, want_token) == 0 &&
            ddm_store(d, identifier, kind, tok, r.body) == 0)
            out = 1;
        else
            fprintf(stderr, "devsim: declaration %s: unexpected answer %s\n", identifier, r.body ? r.body : "");
        json_decref(j);
    } else {
        fprintf(stderr, "devsim: declaration/%s/%s: HTTP %ld\n", kind, identifier, st);
    }
    devsim_reply_free(&r);
    return out;
}

/* The status report the loop sends: what the store holds, plus a few
 * device items. */
static char *ddm_status_report(const devsim_t *d)
{
    json_t *decls = json_object();
    for (size_t k = 0; k < sizeof ddm_kinds / sizeof ddm_kinds[0]; k++)
        json_object_set_new(decls, ddm_kinds[k].status_key, json_array());
    for (size_t i = 0; i < d->ndecls; i++) {
        const struct ddm_decl *x = &d->decls[i];
        json_t *el = json_pack("{s:s,s:s,s:b,s:s}", "identifier", x->identifier, "server-token", x->server_token,
                               "active", x->failure == NULL, "valid", x->failure ? "invalid" : "valid");
        if (x->failure)
            json_object_set_new(el, "reasons",
                                json_pack("[{s:s,s:s}]", "code", x->failure, "description", "simulated failure"));
        for (size_t k = 0; k < sizeof ddm_kinds / sizeof ddm_kinds[0]; k++)
            if (strcmp(x->kind, ddm_kinds[k].kind) == 0)
                json_array_append_new(json_object_get(decls, ddm_kinds[k].status_key), el), el = NULL;
        json_decref(el);
    }
    json_t *report = json_pack(
        "{s:{s:{s:{s:s,s:s},s:{s:s,s:s}},s:{s:o}},s:[],s:b}", "StatusItems", "device", "identifier", "udid", d->udid,
        "serial-number", "SIM-SERIAL-0001", "operating-system", "version", "18.1", "build-version", "22B83",
        "management", "declarations", decls, "Errors", "FullReport", 1);
    char *text = report ? json_dumps(report, JSON_COMPACT) : NULL;
    json_decref(report);
    return text;
}

int devsim_ddm_sync(devsim_t *d, const char *tokens_json, devsim_ddm_result_t *res)
{
    memset(res, 0, sizeof *res);
    devsim_reply_t r;
    memset(&r, 0, sizeof r);
    if (!tokens_json) {
        if (devsim_ddm_checkin(d, "tokens", NULL, 0, &r) != 200) {
            fprintf(stderr, "devsim: tokens: HTTP %ld\n", r.status);
            devsim_reply_free(&r);
            return -1;
        }
        tokens_json = r.body;
    }
    json_t *tokens = tokens_json ? json_loads(tokens_json, 0, NULL) : NULL;
    devsim_reply_free(&r);
    const char *token = json_string_value(json_object_get(json_object_get(tokens, "SyncTokens"), "DeclarationsToken"));
    if (!token) {
        fprintf(stderr, "devsim: TokensResponse without SyncTokens.DeclarationsToken\n");
        json_decref(tokens);
        return -1;
    }
    int same = d->ddm_token && strcmp(d->ddm_token, token) == 0;
    json_decref(tokens);
    if (same)
        return 0; /* Apple: equal tokens end the sync */
    res->token_changed = 1;

    if (devsim_ddm_checkin(d, "declaration-items", NULL, 0, &r) != 200) {
        fprintf(stderr, "devsim: declaration-items: HTTP %ld\n", r.status);
        devsim_reply_free(&r);
        return -1;
    }
    json_t *manifest = reply_json(&r);
    devsim_reply_free(&r);
    json_t *lists = json_object_get(manifest, "Declarations");
    const char *mtoken = json_string_value(json_object_get(manifest, "DeclarationsToken"));
    if (!json_is_object(lists) || !mtoken) {
        fprintf(stderr, "devsim: malformed manifest\n");
        json_decref(manifest);
        return -1;
    }
    int rc = 0;
    /* Drop what the manifest no longer lists. */
    for (size_t i = d->ndecls; i-- > 0;) {
        const struct ddm_decl *x = &d->decls[i];
        int listed = 0;
        for (size_t k = 0; k < sizeof ddm_kinds / sizeof ddm_kinds[0] && !listed; k++) {
            if (strcmp(x->kind, ddm_kinds[k].kind) != 0)
                continue;
            size_t j;
            json_t *item;
            json_array_foreach(json_object_get(lists, ddm_kinds[k].manifest_key), j, item)
            {
                if (strcmp(json_string_value(json_object_get(item, "Identifier")), x->identifier) == 0)
                    listed = 1;
            }
        }
        if (!listed) {
            ddm_drop(d, x->identifier);
            res->removed++;
        }
    }
    /* Fetch what is new or changed. */
    for (size_t k = 0; k < sizeof ddm_kinds / sizeof ddm_kinds[0] && rc == 0; k++) {
        json_t *arr = json_object_get(lists, ddm_kinds[k].manifest_key);
        if (!json_is_array(arr)) {
            fprintf(stderr, "devsim: manifest without %s\n", ddm_kinds[k].manifest_key);
            rc = -1;
            break;
        }
        size_t j;
        json_t *item;
        json_array_foreach(arr, j, item)
        {
            const char *id = json_string_value(json_object_get(item, "Identifier"));
            const char *tok = json_string_value(json_object_get(item, "ServerToken"));
            if (!id || !tok) {
                rc = -1;
                break;
            }
            const char *held = devsim_ddm_server_token(d, id);
            if (held && strcmp(held, tok) == 0)
                continue;
            int f = ddm_fetch(d, ddm_kinds[k].kind, id, tok);
            if (f < 0) {
                rc = -1;
                break;
            }
            if (f == 1)
                res->fetched++;
            else
                res->removed++;
        }
    }
    if (rc == 0) {
        free(d->ddm_token);
        d->ddm_token = strdup(mtoken);
    }
    json_decref(manifest);
    if (rc != 0)
        return -1;
    char *report = ddm_status_report(d);
    if (!report)
        return -1;
    res->status = devsim_ddm_checkin(d, "status", report, strlen(report), &r);
    devsim_reply_free(&r);
    free(report);
    return res->status == 200 ? 0 : -1;
}

int devsim_ddm_handle_command(devsim_t *d, const devsim_reply_t *r, devsim_ddm_result_t *res, devsim_reply_t *next)
{
    memset(next, 0, sizeof *next);
    memset(res, 0, sizeof *res);
    const char *type = devsim_request_type(r);
    if (!type || strcmp(type, "DeclarativeManagement") != 0)
        return 0;
    const plist_t *cmd = plist_dict_get(r->command, "Command");
    size_t len = 0;
    const unsigned char *data = plist_dict_get_data(cmd, "Data", &len);
    char *json = NULL;
    if (data) {
        json = malloc(len + 1);
        if (!json)
            return -1;
        memcpy(json, data, len);
        json[len] = '\0';
    }
    int rc = devsim_ddm_sync(d, json, res);
    free(json);
    if (rc != 0)
        return -1;
    if (devsim_report(d, devsim_command_uuid(r), "Acknowledged", NULL, next) != 0)
        return -1;
    return 1;
}

void devsim_ddm_set_failure(devsim_t *d, const char *identifier, const char *code)
{
    struct ddm_decl *x = ddm_find(d, identifier);
    if (!x)
        return;
    free(x->failure);
    x->failure = code ? strdup(code) : NULL;
}

size_t devsim_ddm_count(const devsim_t *d)
{
    return d->ndecls;
}

const char *devsim_ddm_server_token(const devsim_t *d, const char *identifier)
{
    const struct ddm_decl *x = ddm_find(d, identifier);
    return x ? x->server_token : NULL;
}

const char *devsim_ddm_json(const devsim_t *d, const char *identifier)
{
    const struct ddm_decl *x = ddm_find(d, identifier);
    return x ? x->json : NULL;
}

const char *devsim_ddm_token(const devsim_t *d)
{
    return d->ddm_token;
}
