/* Backend-independent part of the storage interface: choosing a backend from
 * a database URL (sqlite:PATH, a bare path, or postgres:// / postgresql://), closing, and releasing the structs handed to callers. */
#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store_pg_internal.h"
#include "util.h"

/* True if `url` starts with an RFC 3986 scheme followed by "://", e.g.
 * "postgres://". Bare paths such as "./var/orchard.db" or "/data/a:b.db"
 * have no "://" after a scheme-shaped prefix, so they stay paths. */
static size_t url_scheme_len(const char *url)
{
    size_t n = 0;
    if (!((url[0] >= 'A' && url[0] <= 'Z') || (url[0] >= 'a' && url[0] <= 'z')))
        return 0;
    while (url[n] && url[n] != ':') {
        char c = url[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                 c == '-' || c == '.';
        if (!ok)
            return 0;
        n++;
    }
    return strncmp(url + n, "://", 3) == 0 ? n : 0;
}

store_t *store_open(const char *url, char **err)
{
    char *why = NULL;
    store_t *s = NULL;
    const char *path = url;
    if (!url || !*url) {
        why = util_strdup_printf("empty database URL");
        goto out;
    }
    if (strncasecmp(url, "postgres://", 11) == 0 || strncasecmp(url, "postgresql://", 13) == 0) {
        /* libpq parses the URL itself (host, port, user, password, database
         * and query parameters such as sslmode). */
        s = store_pg_open(url, &why);
        goto out;
    }
    if (strncasecmp(url, "sqlite://", 9) == 0) {
        path = url + 9;
    } else if (strncasecmp(url, "sqlite:", 7) == 0) {
        path = url + 7;
    } else {
        size_t scheme_len = url_scheme_len(url);
        if (scheme_len > 0) {
            why = util_strdup_printf("unsupported database URL scheme \"%.*s\" (supported: sqlite:PATH, "
                                     "postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
                                     (int)scheme_len, url);
            goto out;
        }
    }
    if (!*path) {
        why = util_strdup_printf("database URL \"%s\" has an empty path", url);
        goto out;
    }
    s = store_sqlite_open(path, &why);
out:
    if (err)
        *err = why;
    else
        free(why); /* the caller does not want the reason */
    return s;
}

void store_close(store_t *s)
{
    if (s)
        s->ops->close(s);
}

/* Wipes then frees a secret buffer so push credentials and unlock tokens do
 * not linger in freed heap memory (the unlock token can clear a passcode). */
static void free_secret(void *p, size_t len)
{
    if (!p)
        return;
    explicit_bzero(p, len);
    free(p);
}

static void free_secret_str(char *s)
{
    if (s)
        free_secret(s, strlen(s));
}

void enrollment_free(enrollment_t *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->device_id);
    free(e->udid);
    free(e->channel);
    free(e->topic);
    free(e->serial_number);
    free(e->model);
    free(e->model_name);
    free(e->product_name);
    free(e->os_version);
    free(e->build_version);
    free(e->device_name);
    free(e->imei);
    free(e->meid);
    free(e->user_id);
    free(e->user_short_name);
    free(e->user_long_name);
    free(e->cert_sha256);
    free(e->state);
    free_secret(e->push_token, e->push_token_len);
    free_secret_str(e->push_magic);
    free_secret(e->unlock_token, e->unlock_token_len);
    free(e->last_push_id);
    free(e->last_push_error);
    memset(e, 0, sizeof *e);
}

void command_free(command_t *c)
{
    if (!c)
        return;
    free(c->uuid);
    free(c->request_type);
    free(c->body);
    memset(c, 0, sizeof *c);
}

void command_target_free(command_target_t *t)
{
    if (!t)
        return;
    free(t->command_uuid);
    free(t->enrollment_id);
    free(t->request_type);
    free(t->status);
    free(t->result);
    free(t->error_chain_json);
    memset(t, 0, sizeof *t);
}

void store_event_free(store_event_t *ev)
{
    if (!ev)
        return;
    free(ev->enrollment_id);
    free(ev->kind);
    free(ev->detail);
    memset(ev, 0, sizeof *ev);
}

void issued_cert_free(issued_cert_t *c)
{
    if (!c)
        return;
    free(c->serial);
    free(c->subject);
    free(c->enrollment_id);
    free(c->sha256);
    memset(c, 0, sizeof *c);
}

void declaration_free(declaration_t *d)
{
    if (!d)
        return;
    free(d->identifier);
    free(d->type);
    free(d->kind);
    free(d->payload_json);
    free(d->server_token);
    memset(d, 0, sizeof *d);
}

void ddm_state_free(ddm_state_t *st)
{
    if (!st)
        return;
    free(st->enrollment_id);
    free(st->token);
    memset(st, 0, sizeof *st);
}

void ddm_status_item_free(ddm_status_item_t *i)
{
    if (!i)
        return;
    free(i->name);
    free(i->value_json);
    memset(i, 0, sizeof *i);
}

void ddm_decl_status_free(ddm_decl_status_t *d)
{
    if (!d)
        return;
    free(d->identifier);
    free(d->kind);
    free(d->server_token);
    free(d->valid);
    free(d->reasons_json);
    memset(d, 0, sizeof *d);
}

void pairing_token_free(pairing_token_t *p)
{
    if (!p)
        return;
    /* The security token is a bearer secret of the pairing flow. */
    free_secret_str(p->security_token);
    free(p->watch_udid);
    free(p->phone_udid);
    memset(p, 0, sizeof *p);
}

void watch_pairing_free(watch_pairing_t *p)
{
    if (!p)
        return;
    free(p->watch_udid);
    free(p->phone_udid);
    free(p->state);
    memset(p, 0, sizeof *p);
}

void asset_data_free(asset_data_t *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->content_type);
    free(a->data);
    free(a->sha256);
    memset(a, 0, sizeof *a);
}

void ade_token_free(ade_token_t *t)
{
    if (!t)
        return;
    free(t->name);
    free_secret(t->sealed, t->sealed_len);
    free(t->server_name);
    free(t->server_uuid);
    free(t->org_name);
    free(t->default_profile_uuid);
    free(t->cursor);
    free(t->last_error);
    memset(t, 0, sizeof *t);
}

void ade_device_free(ade_device_t *d)
{
    if (!d)
        return;
    free(d->serial_number);
    free(d->token_name);
    free(d->model);
    free(d->description);
    free(d->color);
    free(d->asset_tag);
    free(d->device_family);
    free(d->os);
    free(d->profile_status);
    free(d->profile_uuid);
    free(d->device_assigned_by);
    free(d->op_type);
    memset(d, 0, sizeof *d);
}

void ade_profile_free(ade_profile_t *p)
{
    if (!p)
        return;
    free(p->profile_uuid);
    free(p->token_name);
    free(p->name);
    free(p->json);
    memset(p, 0, sizeof *p);
}
