/* Apple's device enrollment web services over libcurl (see ade_client.h). */
#include "ade_client.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ade_oauth.h"
#include "log.h"
#include "util.h"

#define ANSWER_MAX (32u * 1024 * 1024) /* a 1,000-device page is ~0.5 MB */
#define SESSION_MAX 4096

struct ade_client {
    CURL *curl;
    char *base_url, *ca_file, *user_agent;
    long timeout_s, backoff_ms, max_wait_s;
    int attempts;
    ade_creds_t creds;
    char *session; /* current X-ADM-Auth-Session; NULL until the first /session */
    int sessions;
};

typedef struct {
    char *data;
    size_t len;
    int overflow;
    char session[SESSION_MAX];
    long retry_after; /* seconds, -1 when absent */
} answer_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    answer_t *a = ud;
    size_t n = size * nmemb;
    if (a->len + n > ANSWER_MAX) {
        a->overflow = 1;
        return 0;
    }
    char *grown = realloc(a->data, a->len + n + 1);
    if (!grown)
        return 0;
    memcpy(grown + a->len, ptr, n);
    a->data = grown;
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}

/* Header value of `line` if it is header `name`, trimmed, into out. */
static int header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v);
    if (len == 0 || len >= outlen)
        return 0;
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    answer_t *a = ud;
    size_t n = size * nmemb;
    char v[SESSION_MAX];
    if (header_value(ptr, n, "X-ADM-Auth-Session", v, sizeof v))
        memcpy(a->session, v, strlen(v) + 1);
    else if (header_value(ptr, n, "Retry-After", v, 32) && isdigit((unsigned char)v[0]))
        a->retry_after = strtol(v, NULL, 10);
    return n;
}

static void answer_reset(answer_t *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
    a->retry_after = -1;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s && *s ? s : dflt);
}

ade_client_t *ade_client_new(const ade_client_opts_t *o, const ade_creds_t *creds)
{
    ade_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    const char *base = o->base_url && *o->base_url ? o->base_url : "https://mdmenrollment.apple.com";
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    c->base_url = strndup(base, bl);
    c->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    c->user_agent = dup_or(o->user_agent, "orchard/1");
    c->timeout_s = o->timeout_s > 0 ? o->timeout_s : 60;
    c->attempts = o->attempts > 0 ? o->attempts : 4;
    c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 1000;
    c->max_wait_s = o->max_wait_s > 0 ? o->max_wait_s : 60;
    c->creds.consumer_key = strdup(creds->consumer_key);
    c->creds.consumer_secret = strdup(creds->consumer_secret);
    c->creds.access_token = strdup(creds->access_token);
    c->creds.access_secret = strdup(creds->access_secret);
    c->creds.access_token_expiry = creds->access_token_expiry;
    c->curl = curl_easy_init();
    if (!c->curl || !c->base_url || (o->ca_file && !c->ca_file) || !c->user_agent || !c->creds.consumer_key ||
        !c->creds.consumer_secret || !c->creds.access_token || !c->creds.access_secret) {
        ade_client_free(c);
        return NULL;
    }
    return c;
}

void ade_client_free(ade_client_t *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->base_url);
    free(c->ca_file);
    free(c->user_agent);
    ade_creds_free(&c->creds);
    if (c->session) {
        OPENSSL_cleanse(c->session, strlen(c->session));
        free(c->session);
    }
    free(c);
}

int ade_client_sessions(const ade_client_t *c)
{
    return c->sessions;
}

static void set_err(ade_error_t *e, ade_rc_t rc, long status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void set_err(ade_error_t *e, ade_rc_t rc, long status, const char *code, const char *fmt, ...)
{
    e->rc = rc;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* Apple's error bodies are one word ("INVALID_CURSOR"), sometimes quoted or
 * in JSON; the first run of [A-Z0-9_] of three or more characters is it. */
static void error_word(const char *body, size_t len, char out[64])
{
    out[0] = '\0';
    for (size_t i = 0; body && i < len && i < 4096; i++) {
        size_t j = i;
        while (j < len && j - i < 63 && (isupper((unsigned char)body[j]) || isdigit((unsigned char)body[j]) ||
                                         body[j] == '_'))
            j++;
        if (j - i >= 3 && (j == len || !isalnum((unsigned char)body[j]))) {
            memcpy(out, body + i, j - i);
            out[j - i] = '\0';
            return;
        }
        if (j > i)
            i = j;
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Performs one HTTP exchange (no retry). *status = 0 on a network error
 * (curl's reason in neterr). */
static int perform(ade_client_t *c, const char *method, const char *url, const char *auth, const char *body,
                   answer_t *a, long *status, char *neterr, size_t neterrlen)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *hdrs = NULL;
    char line[SESSION_MAX + 64];
    snprintf(line, sizeof line, "User-Agent: %s", c->user_agent);
    hdrs = curl_slist_append(hdrs, line);
    hdrs = curl_slist_append(hdrs, "X-Server-Protocol-Version: 3");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json;charset=UTF8");
    int oom = 0;
    if (auth) {
        char *l = util_strdup_printf("Authorization: %s", auth);
        struct curl_slist *more = l ? curl_slist_append(hdrs, l) : NULL;
        oom = more == NULL;
        if (more)
            hdrs = more;
        if (l) {
            OPENSSL_cleanse(l, strlen(l));
            free(l);
        }
    } else if (c->session) {
        snprintf(line, sizeof line, "X-ADM-Auth-Session: %s", c->session);
        hdrs = curl_slist_append(hdrs, line);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    OPENSSL_cleanse(line, sizeof line);
    if (!hdrs || oom) {
        curl_slist_free_all(hdrs);
        snprintf(neterr, neterrlen, "out of memory");
        *status = 0;
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->timeout_s < 15 ? c->timeout_s : 15L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        snprintf(neterr, neterrlen, "%s", a->overflow ? "answer too large" : curl_easy_strerror(rc));
        *status = 0;
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* After a retryable answer of attempt `attempt`: 1 when another attempt
 * is due (having waited Retry-After, or the doubled backoff with jitter). */
static int retry_after_wait(ade_client_t *c, const char *what, int attempt, long status, long retry_after)
{
    int retryable = status == 0 || status == 429 || status >= 500;
    if (!retryable || attempt >= c->attempts)
        return 0;
    long wait_ms = c->backoff_ms << (attempt - 1);
    if (retry_after >= 0) {
        wait_ms = retry_after * 1000;
    } else {
        unsigned char j = 0;
        RAND_bytes(&j, 1);
        wait_ms += wait_ms * j / 1024; /* up to +25 %: instances do not retry in step */
    }
    if (wait_ms > c->max_wait_s * 1000)
        wait_ms = c->max_wait_s * 1000;
    log_debug("ade: %s answered %ld (attempt %d of %d), retrying in %ld ms", what, status, attempt, c->attempts,
              wait_ms);
    sleep_ms(wait_ms);
    return 1;
}

/* One exchange with retries for network failures, 429 and 5xx. On return
 * *status is the last status (0: network). */
static void exchange(ade_client_t *c, const char *method, const char *url, const char *body, answer_t *a,
                     long *status, char *neterr, size_t neterrlen)
{
    for (int attempt = 1;; attempt++) {
        answer_reset(a);
        perform(c, method, url, NULL, body, a, status, neterr, neterrlen);
        char what[160];
        snprintf(what, sizeof what, "%s %s", method, url + strlen(c->base_url));
        if (!retry_after_wait(c, what, attempt, *status, a->retry_after))
            return;
    }
}

static void adopt_session(ade_client_t *c, const char *s)
{
    if (!s || !*s)
        return;
    if (c->session && strcmp(c->session, s) == 0)
        return;
    char *copy = strdup(s);
    if (!copy)
        return;
    if (c->session) {
        OPENSSL_cleanse(c->session, strlen(c->session));
        free(c->session);
    }
    c->session = copy;
}

/* Classifies a non-2xx answer into err. */
static ade_rc_t classify(const char *what, long status, const char *body, size_t len, int attempts, const char *neterr,
                         ade_error_t *err)
{
    char word[64];
    error_word(body, len, word);
    if (status == 0) {
        set_err(err, ADE_E_NETWORK, 0, "", "%s: no answer from Apple after %d attempts (%s)", what, attempts, neterr);
    } else if (status == 429 || status >= 500) {
        set_err(err, ADE_E_BUSY, status, word, "%s: Apple answered %ld%s%s after %d attempts", what, status,
                word[0] ? " " : "", word, attempts);
    } else if (status == 403 && strcmp(word, "T_C_NOT_SIGNED") == 0) {
        set_err(err, ADE_E_TERMS, status, word,
                "%s: 403 T_C_NOT_SIGNED: the organization has not accepted Apple's latest terms and conditions; "
                "an administrator must sign in to Apple Business Manager and accept them",
                what);
    } else if (status == 403) {
        set_err(err, ADE_E_DENIED, status, word[0] ? word : "ACCESS_DENIED",
                "%s: 403 %s: Apple refuses this MDM server's token for this request (revoked, or replaced by a "
                "newer token in Apple Business Manager?)",
                what, word[0] ? word : "ACCESS_DENIED");
    } else if (status == 401) {
        set_err(err, ADE_E_AUTH, status, word[0] ? word : "UNAUTHORIZED",
                "%s: 401 %s even with a new session: Apple does not accept this token", what,
                word[0] ? word : "UNAUTHORIZED");
    } else if (status == 400 && (strcmp(word, "INVALID_CURSOR") == 0 || strcmp(word, "EXHAUSTED_CURSOR") == 0 ||
                                 strcmp(word, "EXPIRED_CURSOR") == 0 || strcmp(word, "CURSOR_REQUIRED") == 0)) {
        set_err(err, ADE_E_CURSOR, status, word, "%s: 400 %s", what, word);
    } else if (status == 404) {
        set_err(err, ADE_E_NOTFOUND, status, word[0] ? word : "NOT_FOUND", "%s: 404 %s", what,
                word[0] ? word : "NOT_FOUND");
    } else {
        set_err(err, ADE_E_REQUEST, status, word, "%s: Apple refused the request: %ld %s", what, status,
                word[0] ? word : "(no reason given)");
    }
    return err->rc;
}

/* GET /session with the OAuth signature: a fresh X-ADM-Auth-Session. */
static ade_rc_t new_session(ade_client_t *c, ade_error_t *err)
{
    char *url = util_strdup_printf("%s/session", c->base_url);
    answer_t a = {0};
    long status = 0;
    char neterr[256] = "";
    /* Signed afresh for every attempt: Apple refuses a nonce seen before. */
    for (int attempt = 1;; attempt++) {
        char nonce[33];
        char *auth = url && util_random_hex(nonce, 16) == 0
                         ? ade_oauth_authorization("GET", url, c->creds.consumer_key, c->creds.consumer_secret,
                                                   c->creds.access_token, c->creds.access_secret, nonce, util_now())
                         : NULL;
        if (!auth) {
            free(url);
            answer_reset(&a);
            set_err(err, ADE_E_INTERNAL, 0, "", "cannot sign the session request (out of memory or bad --ade-url)");
            return err->rc;
        }
        answer_reset(&a);
        perform(c, "GET", url, auth, NULL, &a, &status, neterr, sizeof neterr);
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
        if (!retry_after_wait(c, "GET /session", attempt, status, a.retry_after))
            break;
    }
    free(url);
    c->sessions++;
    ade_rc_t rc = ADE_OK;
    if (status == 200) {
        json_t *o = json_loadb(a.data ? a.data : "", a.len, 0, NULL);
        const char *tok = json_string_value(json_object_get(o, "auth_session_token"));
        if (tok && *tok && strlen(tok) < SESSION_MAX) {
            adopt_session(c, tok);
        } else {
            set_err(err, ADE_E_MALFORMED, status, "", "session: Apple's answer has no auth_session_token");
            rc = err->rc;
        }
        json_decref(o);
    } else if (status == 401 || status == 400) {
        char word[64];
        error_word(a.data, a.len, word);
        set_err(err, ADE_E_AUTH, status, word[0] ? word : "UNAUTHORIZED",
                "session: Apple refused the token's OAuth credentials (%ld %s): the token was revoked, replaced or "
                "has expired; download a new one from Apple Business Manager",
                status, word[0] ? word : "UNAUTHORIZED");
        rc = err->rc;
    } else {
        rc = classify("session", status, a.data, a.len, c->attempts, neterr, err);
    }
    if (a.data)
        OPENSSL_cleanse(a.data, a.len);
    answer_reset(&a);
    return rc;
}

ade_rc_t ade_client_call(ade_client_t *c, const char *method, const char *path, json_t *body, json_t **out,
                         ade_error_t *err)
{
    memset(err, 0, sizeof *err);
    if (out)
        *out = NULL;
    char what[128];
    snprintf(what, sizeof what, "%s %s", method, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char *url = util_strdup_printf("%s%s", c->base_url, path);
    if ((body && !text) || !url) {
        free(text);
        free(url);
        set_err(err, ADE_E_INTERNAL, 0, "", "%s: out of memory", what);
        return err->rc;
    }
    ade_rc_t rc = ADE_OK;
    answer_t a = {0};
    long status = 0;
    char neterr[256] = "";
    int renewed = 0; /* one new session per call after a 401, then the 401 stands */
    if (!c->session)
        rc = new_session(c, err);
    while (rc == ADE_OK) {
        exchange(c, method, url, text, &a, &status, neterr, sizeof neterr);
        adopt_session(c, a.session); /* Apple rotates the session in any answer */
        if (status == 401 && !renewed) {
            /* The session expired: one new session, then the call again. */
            log_debug("ade: %s: session expired, requesting a new one", what);
            renewed = 1;
            rc = new_session(c, err);
            continue;
        }
        if (status >= 200 && status < 300) {
            json_error_t je;
            json_t *o = a.len ? json_loadb(a.data, a.len, 0, &je) : json_object();
            if (!json_is_object(o)) {
                set_err(err, ADE_E_MALFORMED, status, "", "%s: Apple's answer is not a JSON object (%s)", what,
                        o ? "wrong type" : je.text);
                json_decref(o);
                rc = err->rc;
            } else if (out) {
                *out = o;
            } else {
                json_decref(o);
            }
        } else {
            rc = classify(what, status, a.data, a.len, c->attempts, neterr, err);
        }
        break;
    }
    answer_reset(&a);
    free(text);
    free(url);
    return rc;
}

ade_rc_t ade_account(ade_client_t *c, json_t **out, ade_error_t *err)
{
    return ade_client_call(c, "GET", "/account", NULL, out, err);
}

static ade_rc_t cursor_call(ade_client_t *c, const char *path, const char *cursor, int limit, json_t **out,
                            ade_error_t *err)
{
    json_t *body = json_object();
    if (cursor)
        json_object_set_new(body, "cursor", json_string(cursor));
    if (limit > 0)
        json_object_set_new(body, "limit", json_integer(limit));
    ade_rc_t rc = ade_client_call(c, "POST", path, body, out, err);
    json_decref(body);
    return rc;
}

ade_rc_t ade_fetch_devices(ade_client_t *c, const char *cursor, int limit, json_t **out, ade_error_t *err)
{
    return cursor_call(c, "/server/devices", cursor, limit, out, err);
}

ade_rc_t ade_sync_devices(ade_client_t *c, const char *cursor, int limit, json_t **out, ade_error_t *err)
{
    return cursor_call(c, "/devices/sync", cursor, limit, out, err);
}

static json_t *serial_array(const char *const *serials, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(serials[i]));
    return a;
}

static ade_rc_t devices_call(ade_client_t *c, const char *method, const char *path, const char *profile_uuid,
                             const char *const *serials, size_t n, json_t **out, ade_error_t *err)
{
    json_t *body = json_object();
    if (profile_uuid)
        json_object_set_new(body, "profile_uuid", json_string(profile_uuid));
    json_object_set_new(body, "devices", serial_array(serials, n));
    ade_rc_t rc = ade_client_call(c, method, path, body, out, err);
    json_decref(body);
    return rc;
}

ade_rc_t ade_device_details(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err)
{
    return devices_call(c, "POST", "/devices", NULL, serials, n, out, err);
}

ade_rc_t ade_disown_devices(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err)
{
    return devices_call(c, "POST", "/devices/disown", NULL, serials, n, out, err);
}

ade_rc_t ade_define_profile(ade_client_t *c, json_t *profile, json_t **out, ade_error_t *err)
{
    return ade_client_call(c, "POST", "/profile", profile, out, err);
}

ade_rc_t ade_assign_profile(ade_client_t *c, const char *profile_uuid, const char *const *serials, size_t n,
                            json_t **out, ade_error_t *err)
{
    return devices_call(c, "PUT", "/profile/devices", profile_uuid, serials, n, out, err);
}

ade_rc_t ade_fetch_profile(ade_client_t *c, const char *profile_uuid, json_t **out, ade_error_t *err)
{
    char *e = ade_oauth_encode(profile_uuid);
    char *path = e ? util_strdup_printf("/profile?profile_uuid=%s", e) : NULL;
    free(e);
    if (!path) {
        memset(err, 0, sizeof *err);
        set_err(err, ADE_E_INTERNAL, 0, "", "out of memory");
        return err->rc;
    }
    ade_rc_t rc = ade_client_call(c, "GET", path, NULL, out, err);
    free(path);
    return rc;
}

ade_rc_t ade_remove_profile(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err)
{
    return devices_call(c, "DELETE", "/profile/devices", NULL, serials, n, out, err);
}
