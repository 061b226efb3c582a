/* One ADE sync run of a server token, and the shared ADE environment (see
 * ade_sync.h). */
#include "ade_sync.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ade_time.h"
#include "ade_token.h"
#include "log.h"
#include "util.h"

#define ASSIGN_BATCH 1000
#define SERIAL_MAX 64

int ade_token_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int ade_env_init(ade_env_t *env, const char *data_dir, const char *db_url, const char *public_url, char *err,
                 size_t errlen)
{
    memset(env, 0, sizeof *env);
    env->data_dir = data_dir;
    env->db_url = db_url;
    env->public_url = public_url;
    env->page_limit = 1000;
    if (seal_key_load(data_dir, ADE_SEAL_KEY_FILE, "ADE key", env->seal_key, err, errlen) != 0)
        return -1;
    char host[64] = "", rnd[17] = "";
    gethostname(host, sizeof host - 1);
    util_random_hex(rnd, 8);
    /* Random part: a restarted process must not inherit its predecessor's
     * lease through pid reuse. */
    snprintf(env->holder, sizeof env->holder, "%s:%ld:%s", host, (long)getpid(), rnd);
    pthread_mutex_init(&env->mu, NULL);
    return 0;
}

void ade_env_clear(ade_env_t *env)
{
    if (!env)
        return;
    OPENSSL_cleanse(env->seal_key, sizeof env->seal_key);
    pthread_mutex_destroy(&env->mu);
}

int ade_token_store(ade_env_t *env, store_t *s, const char *name, const ade_creds_t *creds, int64_t now)
{
    char *json = ade_creds_to_json(creds);
    size_t sealed_len = 0;
    unsigned char *sealed = json ? seal(env->seal_key, name, json, strlen(json), &sealed_len) : NULL;
    if (json)
        unsealed_free(json, strlen(json));
    if (!sealed)
        return STORE_ERR;
    ade_token_t t = {.name = (char *)name,
                     .sealed = sealed,
                     .sealed_len = sealed_len,
                     .access_token_expiry = creds->access_token_expiry};
    int rc = s->ops->ade_token_put(s, &t, now);
    free(sealed);
    return rc;
}

ade_client_t *ade_env_client(ade_env_t *env, store_t *s, const char *name, int *store_rc, char *err, size_t errlen)
{
    ade_token_t t;
    int rc = s->ops->ade_token_get(s, name, &t);
    if (store_rc)
        *store_rc = rc;
    if (rc != STORE_OK) {
        util_set_err(err, errlen, rc == STORE_NOTFOUND ? "no ADE token named %s" : "storage error reading token %s",
                     name);
        return NULL;
    }
    size_t len = 0;
    char *json = unseal(env->seal_key, name, t.sealed, t.sealed_len, &len);
    ade_token_free(&t);
    if (!json) {
        util_set_err(err, errlen,
                     "the credentials of token %s cannot be unsealed (DATA_DIR/%s differs from the one that sealed "
                     "them?); import the token again",
                     name, ADE_SEAL_KEY_FILE);
        return NULL;
    }
    ade_creds_t creds;
    char why[256];
    int ok = ade_creds_from_json(json, len, &creds, why, sizeof why) == 0;
    unsealed_free(json, len);
    if (!ok) {
        util_set_err(err, errlen, "token %s: %s", name, why);
        return NULL;
    }
    ade_client_t *c = ade_client_new(&env->client, &creds);
    ade_creds_free(&creds);
    if (!c)
        util_set_err(err, errlen, "out of memory");
    return c;
}

ade_rc_t ade_refresh_account(ade_env_t *env, store_t *s, const char *name, ade_error_t *err)
{
    memset(err, 0, sizeof *err);
    ade_client_t *c = ade_env_client(env, s, name, NULL, err->message, sizeof err->message);
    if (!c) {
        err->rc = ADE_E_INTERNAL;
        return err->rc;
    }
    json_t *acct = NULL;
    ade_rc_t rc = ade_account(c, &acct, err);
    int64_t now = util_now();
    if (rc == ADE_OK) {
        const char *sn = json_string_value(json_object_get(acct, "server_name"));
        const char *su = json_string_value(json_object_get(acct, "server_uuid"));
        const char *on = json_string_value(json_object_get(acct, "org_name"));
        if (s->ops->ade_token_set_account(s, name, sn, su, on, now) != STORE_OK)
            log_error("ade: cannot record the account of token %s: %s", name, s->ops->errmsg(s));
        else
            log_info("ade: token %s is MDM server \"%s\" of %s", name, sn ? sn : "?", on ? on : "?");
    } else {
        s->ops->ade_token_sync_state(s, name, NULL, err->message, now);
        log_warn("ade: token %s: %s", name, err->message);
    }
    json_decref(acct);
    ade_client_free(c);
    return rc;
}

/* ---- device records ---------------------------------------------------------- */

static int str_field(json_t *o, const char *key, char **out, char *why, size_t whylen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > 1024) {
        util_set_err(why, whylen, "%s is not a string", key);
        return -1;
    }
    *out = (char *)json_string_value(v);
    return 0;
}

static int time_field(json_t *o, const char *key, int64_t *out, char *why, size_t whylen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || ade_time_parse(json_string_value(v), out) != 0) {
        util_set_err(why, whylen, "%s is not an ISO 8601 time", key);
        return -1;
    }
    return 0;
}

static int serial_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SERIAL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '/')
            return 0;
    return 1;
}

int ade_device_from_json(json_t *o, const char *serial, const char *token_name, ade_device_t *d, char *why,
                         size_t whylen)
{
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) {
        util_set_err(why, whylen, "a device record is not an object");
        return -1;
    }
    char *sn = (char *)serial;
    if (!sn && str_field(o, "serial_number", &sn, why, whylen) != 0)
        return -1;
    if (!serial_ok(sn)) {
        util_set_err(why, whylen, "a device record has no valid serial_number");
        return -1;
    }
    d->serial_number = sn;
    d->token_name = (char *)token_name;
    if (str_field(o, "model", &d->model, why, whylen) || str_field(o, "description", &d->description, why, whylen) ||
        str_field(o, "color", &d->color, why, whylen) || str_field(o, "asset_tag", &d->asset_tag, why, whylen) ||
        str_field(o, "device_family", &d->device_family, why, whylen) || str_field(o, "os", &d->os, why, whylen) ||
        str_field(o, "profile_status", &d->profile_status, why, whylen) ||
        str_field(o, "profile_uuid", &d->profile_uuid, why, whylen) ||
        str_field(o, "device_assigned_by", &d->device_assigned_by, why, whylen) ||
        str_field(o, "op_type", &d->op_type, why, whylen) ||
        time_field(o, "profile_assign_time", &d->profile_assign_time, why, whylen) ||
        time_field(o, "profile_push_time", &d->profile_push_time, why, whylen) ||
        time_field(o, "device_assigned_date", &d->device_assigned_date, why, whylen) ||
        time_field(o, "op_date", &d->op_date, why, whylen)) {
        char field[200];
        snprintf(field, sizeof field, "%s", why);
        util_set_err(why, whylen, "device %.64s: %s", sn, field);
        return -1;
    }
    if (d->op_type) {
        /* Apple's documentation says "updated", its service says "modified". */
        if (strcmp(d->op_type, "updated") == 0)
            d->op_type = "modified";
        if (strcmp(d->op_type, "added") != 0 && strcmp(d->op_type, "modified") != 0 &&
            strcmp(d->op_type, "deleted") != 0) {
            util_set_err(why, whylen, "device %.64s: unknown op_type", sn);
            return -1;
        }
    }
    return 0;
}

/* ---- one run ------------------------------------------------------------------- */

typedef struct {
    ade_env_t *env;
    store_t *s;
    const char *name;
    ade_client_t *c;
    char *default_profile;
    ade_sync_report_t *rep;
} run_t;

static void fail(run_t *r, ade_rc_t rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(run_t *r, ade_rc_t rc, const char *fmt, ...)
{
    r->rep->outcome = ADE_SYNC_FAILED;
    r->rep->error.rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->rep->error.message, sizeof r->rep->error.message, fmt, ap);
    va_end(ap);
}

/* Assigns the default profile to the given serials and records each
 * SUCCESS. A failure here is logged, not fatal to the sync: the devices are
 * stored and the admin can assign by hand. */
static void assign_default(run_t *r, const char **serials, size_t n)
{
    json_t *ans = NULL;
    ade_error_t err;
    if (ade_assign_profile(r->c, r->default_profile, serials, n, &ans, &err) != ADE_OK) {
        log_warn("ade: token %s: assigning default profile %s to %zu new devices failed: %s", r->name,
                 r->default_profile, n, err.message);
        return;
    }
    json_t *devs = json_object_get(ans, "devices");
    int64_t now = util_now();
    for (size_t i = 0; i < n; i++) {
        const char *st = json_string_value(json_object_get(devs, serials[i]));
        if (st && strcmp(st, "SUCCESS") == 0) {
            if (r->s->ops->ade_device_set_profile(r->s, serials[i], r->default_profile, "assigned", now) == STORE_OK)
                r->rep->assigned++;
        } else {
            log_warn("ade: token %s: default profile not assigned to %s: %s", r->name, serials[i], st ? st : "no answer");
        }
    }
    json_decref(ans);
}

/* Validates and applies one page; 0, or -1 after fail(). *cursor and
 * *more come from the page (cursor borrowed from page). */
static int apply_page(run_t *r, json_t *page, const char **cursor, int *more)
{
    json_t *devs = json_object_get(page, "devices");
    json_t *cur = json_object_get(page, "cursor");
    json_t *mtf = json_object_get(page, "more_to_follow");
    if ((devs && !json_is_array(devs)) || (cur && !json_is_string(cur)) ||
        (mtf && !json_is_boolean(mtf) && !json_is_string(mtf))) {
        fail(r, ADE_E_MALFORMED, "Apple's device page is malformed (devices, cursor or more_to_follow of the wrong "
                                 "type); nothing stored from it");
        return -1;
    }
    *cursor = cur ? json_string_value(cur) : NULL;
    *more = json_is_true(mtf) || (json_is_string(mtf) && strcmp(json_string_value(mtf), "true") == 0);
    size_t n = devs ? json_array_size(devs) : 0;
    if (n > 10000) {
        fail(r, ADE_E_MALFORMED, "Apple's device page has %zu records; nothing stored from it", n);
        return -1;
    }
    ade_device_t *d = n ? calloc(n, sizeof *d) : NULL;
    int *applied = n ? calloc(n, sizeof *applied) : NULL;
    const char **fresh = n ? calloc(n, sizeof *fresh) : NULL;
    if (n && (!d || !applied || !fresh)) {
        free(d);
        free(applied);
        free(fresh);
        fail(r, ADE_E_INTERNAL, "out of memory");
        return -1;
    }
    char why[256];
    for (size_t i = 0; i < n; i++) {
        if (ade_device_from_json(json_array_get(devs, i), NULL, r->name, &d[i], why, sizeof why) != 0) {
            fail(r, ADE_E_MALFORMED, "Apple's device page is malformed (%s); nothing stored from it", why);
            free(d);
            free(applied);
            free(fresh);
            return -1;
        }
    }
    size_t added = 0;
    int rc = n ? r->s->ops->ade_devices_apply(r->s, d, n, util_now(), applied, &added) : STORE_OK;
    if (rc != STORE_OK) {
        fail(r, ADE_E_INTERNAL, "storing devices failed: %s", r->s->ops->errmsg(r->s));
    } else {
        r->rep->records += n;
        r->rep->added += added;
        size_t nfresh = 0;
        for (size_t i = 0; i < n; i++) {
            r->rep->applied += (size_t)applied[i];
            /* Devices that arrived (not modifications) and that Apple says
             * carry no profile of ours yet; never more than `added`. */
            int arrival = !d[i].op_type || strcmp(d[i].op_type, "added") == 0;
            int has_default = d[i].profile_uuid && r->default_profile &&
                              strcmp(d[i].profile_uuid, r->default_profile) == 0;
            if (applied[i] && arrival && !has_default && nfresh < added) {
                int dup = 0;
                for (size_t k = 0; k < nfresh && !dup; k++)
                    dup = strcmp(fresh[k], d[i].serial_number) == 0;
                if (!dup)
                    fresh[nfresh++] = d[i].serial_number;
            }
        }
        if (r->default_profile)
            for (size_t off = 0; off < nfresh; off += ASSIGN_BATCH)
                assign_default(r, fresh + off, nfresh - off < ASSIGN_BATCH ? nfresh - off : ASSIGN_BATCH);
    }
    free(d);
    free(applied);
    free(fresh);
    return rc == STORE_OK ? 0 : -1;
}

/* Full fetch; keeps the final cursor only when it completes. */
static int full_fetch(run_t *r)
{
    r->rep->full_fetch = 1;
    char *cursor = NULL;
    int more = 1, result = 0;
    while (more) {
        json_t *page = NULL;
        ade_error_t err;
        ade_rc_t rc = ade_fetch_devices(r->c, cursor, r->env->page_limit, &page, &err);
        if (rc == ADE_E_CURSOR && cursor && strcmp(err.code, "EXHAUSTED_CURSOR") == 0) {
            /* Everything was returned already. */
            break;
        }
        if (rc != ADE_OK) {
            r->rep->error = err;
            r->rep->outcome = ADE_SYNC_FAILED;
            result = -1;
            break;
        }
        r->rep->pages++;
        const char *next = NULL;
        if (apply_page(r, page, &next, &more) != 0) {
            json_decref(page);
            result = -1;
            break;
        }
        if (next) {
            free(cursor);
            cursor = strdup(next);
        }
        json_decref(page);
        if (more && !next) {
            fail(r, ADE_E_MALFORMED, "Apple's fetch page says more_to_follow but has no cursor");
            result = -1;
            break;
        }
    }
    if (result == 0 && r->s->ops->ade_token_sync_state(r->s, r->name, cursor, NULL, util_now()) != STORE_OK) {
        fail(r, ADE_E_INTERNAL, "recording the cursor failed: %s", r->s->ops->errmsg(r->s));
        result = -1;
    }
    free(cursor);
    return result;
}

/* Sync from the stored cursor; 1 when the cursor was refused (start over). */
static int sync_from(run_t *r, const char *stored)
{
    char *cursor = strdup(stored);
    int more = 1, result = 0;
    while (cursor && more) {
        json_t *page = NULL;
        ade_error_t err;
        ade_rc_t rc = ade_sync_devices(r->c, cursor, r->env->page_limit, &page, &err);
        if (rc == ADE_E_CURSOR) {
            log_warn("ade: token %s: Apple refused the sync cursor (%s); fetching all devices again", r->name,
                     err.code);
            r->rep->cursor_reset = 1;
            if (r->s->ops->ade_token_reset_cursor(r->s, r->name, util_now()) != STORE_OK) {
                fail(r, ADE_E_INTERNAL, "resetting the cursor failed: %s", r->s->ops->errmsg(r->s));
                result = -1;
            } else {
                result = 1;
            }
            break;
        }
        if (rc != ADE_OK) {
            r->rep->error = err;
            r->rep->outcome = ADE_SYNC_FAILED;
            result = -1;
            break;
        }
        r->rep->pages++;
        const char *next = NULL;
        if (apply_page(r, page, &next, &more) != 0) {
            json_decref(page);
            result = -1;
            break;
        }
        if (next) {
            free(cursor);
            cursor = strdup(next);
        }
        int got_cursor = next != NULL;
        json_decref(page);
        /* Each sync page is durable progress. */
        if (r->s->ops->ade_token_sync_state(r->s, r->name, got_cursor ? cursor : NULL, NULL, util_now()) !=
            STORE_OK) {
            fail(r, ADE_E_INTERNAL, "recording the cursor failed: %s", r->s->ops->errmsg(r->s));
            result = -1;
            break;
        }
        if (more && !got_cursor) {
            fail(r, ADE_E_MALFORMED, "Apple's sync page says more_to_follow but has no cursor");
            result = -1;
            break;
        }
    }
    if (!cursor && result == 0)
        fail(r, ADE_E_INTERNAL, "out of memory");
    free(cursor);
    return result;
}

void ade_sync_token(ade_env_t *env, store_t *s, const char *name, ade_sync_report_t *rep)
{
    memset(rep, 0, sizeof *rep);
    run_t r = {.env = env, .s = s, .name = name, .rep = rep};
    char lease[96];
    snprintf(lease, sizeof lease, "ade-sync:%s", name);
    int64_t ttl = env->interval_s > 0 ? 3 * env->interval_s : 900;
    if (ttl < 300)
        ttl = 300;
    pthread_mutex_lock(&env->mu);
    int lrc = s->ops->lease_acquire(s, lease, env->holder, ttl, util_now());
    if (lrc == STORE_CONFLICT) {
        rep->outcome = ADE_SYNC_LEASED;
        snprintf(rep->error.message, sizeof rep->error.message,
                 "another orchard instance holds the sync lease of token %s", name);
        pthread_mutex_unlock(&env->mu);
        return;
    }
    if (lrc != STORE_OK) {
        fail(&r, ADE_E_INTERNAL, "cannot take the sync lease: %s", s->ops->errmsg(s));
        pthread_mutex_unlock(&env->mu);
        return;
    }
    ade_token_t tok;
    int trc = s->ops->ade_token_get(s, name, &tok);
    if (trc != STORE_OK) {
        if (trc == STORE_NOTFOUND) {
            rep->outcome = ADE_SYNC_NO_TOKEN;
            snprintf(rep->error.message, sizeof rep->error.message, "no ADE token named %s", name);
        } else {
            fail(&r, ADE_E_INTERNAL, "storage error: %s", s->ops->errmsg(s));
        }
        pthread_mutex_unlock(&env->mu);
        return;
    }
    r.default_profile = tok.default_profile_uuid ? strdup(tok.default_profile_uuid) : NULL;
    char why[400];
    if (!(r.c = ade_env_client(env, s, name, NULL, why, sizeof why))) {
        fail(&r, ADE_E_INTERNAL, "%s", why);
    } else {
        int ok = 1;
        if (!tok.server_name) {
            json_t *acct = NULL;
            ade_error_t err;
            if (ade_account(r.c, &acct, &err) == ADE_OK) {
                s->ops->ade_token_set_account(s, name, json_string_value(json_object_get(acct, "server_name")),
                                              json_string_value(json_object_get(acct, "server_uuid")),
                                              json_string_value(json_object_get(acct, "org_name")), util_now());
            } else {
                rep->error = err;
                rep->outcome = ADE_SYNC_FAILED;
                ok = 0;
            }
            json_decref(acct);
        }
        int restart = 0;
        if (ok && tok.cursor)
            restart = sync_from(&r, tok.cursor);
        if (ok && (!tok.cursor || restart == 1))
            full_fetch(&r);
        rep->sessions = ade_client_sessions(r.c);
    }
    if (rep->outcome == ADE_SYNC_FAILED) {
        s->ops->ade_token_sync_state(s, name, NULL, rep->error.message, util_now());
        log_warn("ade: token %s: sync failed: %s", name, rep->error.message);
    } else {
        rep->outcome = ADE_SYNC_DONE;
        log_info("ade: token %s: %s, %d pages, %zu records, %zu changed, %zu new, %zu default profile assigned", name,
                 rep->full_fetch ? "full fetch" : "sync", rep->pages, rep->records, rep->applied, rep->added,
                 rep->assigned);
    }
    ade_client_free(r.c);
    free(r.default_profile);
    ade_token_free(&tok);
    pthread_mutex_unlock(&env->mu);
}
