/* OAuth 1.0a HMAC-SHA1 signing (RFC 5849), see ade_oauth.h. */
#include "ade_oauth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

char *ade_oauth_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *p = out;
    if (!out)
        return NULL;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            *p++ = (char)*c;
        } else {
            *p++ = '%';
            *p++ = hex[*c >> 4];
            *p++ = hex[*c & 15];
        }
    }
    *p = '\0';
    return out;
}

/* Decodes application/x-www-form-urlencoded text (RFC 5849 3.4.1.3.1: the
 * query's "+" is a space). Heap. */
static char *form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            *p++ = ' ';
        } else if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
                   isxdigit((unsigned char)s[i + 2])) {
            char h[3] = {s[i + 1], s[i + 2], 0};
            *p++ = (char)strtol(h, NULL, 16);
            i += 2;
        } else {
            *p++ = s[i];
        }
    }
    *p = '\0';
    return out;
}

typedef struct {
    char *name, *value; /* encoded */
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static int add_pair(pair_t *pairs, size_t *n, const char *name, const char *value)
{
    pairs[*n].name = ade_oauth_encode(name);
    pairs[*n].value = ade_oauth_encode(value);
    (*n)++;
    return pairs[*n - 1].name && pairs[*n - 1].value ? 0 : -1;
}

char *ade_oauth_base_string(const char *method, const char *url, const ade_oauth_param_t *params, size_t n)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return NULL;
    const char *host = sep + 3, *path = host + strcspn(host, "/?#");
    const char *query = *path == '?' ? path : strchr(path, '?');
    size_t path_len = query ? (size_t)(query - path) : strcspn(path, "#");
    size_t host_len = (size_t)(path - host);
    size_t scheme_len = (size_t)(sep - url);
    char scheme[16], hostbuf[300];
    if (scheme_len == 0 || scheme_len >= sizeof scheme || host_len == 0 || host_len >= sizeof hostbuf)
        return NULL;
    for (size_t i = 0; i < scheme_len; i++)
        scheme[i] = (char)tolower((unsigned char)url[i]);
    scheme[scheme_len] = '\0';
    for (size_t i = 0; i < host_len; i++)
        hostbuf[i] = (char)tolower((unsigned char)host[i]);
    hostbuf[host_len] = '\0';
    /* The default port is not part of the base string URI. */
    char *colon = strrchr(hostbuf, ':');
    if (colon && !strchr(colon, ']') &&
        ((strcmp(scheme, "https") == 0 && strcmp(colon, ":443") == 0) ||
         (strcmp(scheme, "http") == 0 && strcmp(colon, ":80") == 0)))
        *colon = '\0';

    size_t cap = n + 1;
    if (query)
        for (const char *q = query; *q && *q != '#'; q++)
            cap += *q == '&';
    pair_t *pairs = calloc(cap, sizeof *pairs);
    size_t np = 0;
    int ok = pairs != NULL;
    if (ok && query) {
        const char *q = query + 1, *qend = q + strcspn(q, "#");
        while (ok && q < qend) {
            const char *amp = memchr(q, '&', (size_t)(qend - q));
            const char *item_end = amp ? amp : qend;
            if (item_end > q) {
                const char *eq = memchr(q, '=', (size_t)(item_end - q));
                char *name = form_decode(q, (size_t)((eq ? eq : item_end) - q));
                char *value = eq ? form_decode(eq + 1, (size_t)(item_end - eq - 1)) : strdup("");
                ok = name && value && add_pair(pairs, &np, name, value) == 0;
                free(name);
                free(value);
            }
            q = item_end + 1;
        }
    }
    for (size_t i = 0; ok && i < n; i++)
        ok = add_pair(pairs, &np, params[i].name, params[i].value) == 0;
    char *result = NULL;
    if (ok) {
        qsort(pairs, np, sizeof *pairs, pair_cmp);
        size_t len = 1;
        for (size_t i = 0; i < np; i++)
            len += strlen(pairs[i].name) + strlen(pairs[i].value) + 2;
        char *norm = malloc(len), *p = norm;
        if (norm) {
            *p = '\0';
            for (size_t i = 0; i < np; i++)
                p += sprintf(p, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
            char *uri = util_strdup_printf("%s://%s%.*s", scheme, hostbuf, (int)path_len, path_len ? path : "/");
            char *e_method = ade_oauth_encode(method), *e_uri = uri ? ade_oauth_encode(uri) : NULL;
            char *e_norm = ade_oauth_encode(norm);
            if (e_method && e_uri && e_norm)
                result = util_strdup_printf("%s&%s&%s", e_method, e_uri, e_norm);
            free(uri);
            free(e_method);
            free(e_uri);
            free(e_norm);
            free(norm);
        }
    }
    for (size_t i = 0; pairs && i < np; i++) {
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
    return result;
}

int ade_oauth_sign(const char *base, const char *consumer_secret, const char *token_secret, char out[32])
{
    char *ck = ade_oauth_encode(consumer_secret), *tk = ade_oauth_encode(token_secret ? token_secret : "");
    char *key = ck && tk ? util_strdup_printf("%s&%s", ck, tk) : NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    int rc = -1;
    if (key && HMAC(EVP_sha1(), key, (int)strlen(key), (const unsigned char *)base, strlen(base), mac, &mac_len)) {
        char *b64 = util_base64_encode(mac, mac_len);
        if (b64 && strlen(b64) < 32) {
            strcpy(out, b64);
            rc = 0;
        }
        free(b64);
    }
    free(ck);
    free(tk);
    free(key);
    return rc;
}

char *ade_oauth_authorization(const char *method, const char *url, const char *consumer_key,
                              const char *consumer_secret, const char *token, const char *token_secret,
                              const char *nonce, int64_t timestamp)
{
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    ade_oauth_param_t p[] = {{"oauth_consumer_key", consumer_key},   {"oauth_token", token},
                             {"oauth_signature_method", "HMAC-SHA1"}, {"oauth_timestamp", ts},
                             {"oauth_nonce", nonce},                 {"oauth_version", "1.0"}};
    size_t np = sizeof p / sizeof p[0];
    char *base = ade_oauth_base_string(method, url, p, np);
    char sig[32];
    char *header = NULL;
    if (base && ade_oauth_sign(base, consumer_secret, token_secret, sig) == 0) {
        /* Parameter values are encoded in the header too (RFC 5849 3.5.1). */
        char *e[7];
        for (size_t i = 0; i < np; i++)
            e[i] = ade_oauth_encode(p[i].value);
        e[6] = ade_oauth_encode(sig);
        int ok = 1;
        for (size_t i = 0; i < 7; i++)
            ok &= e[i] != NULL;
        if (ok)
            header = util_strdup_printf("OAuth realm=\"ADM\", oauth_consumer_key=\"%s\", oauth_token=\"%s\", "
                                        "oauth_signature_method=\"%s\", oauth_timestamp=\"%s\", oauth_nonce=\"%s\", "
                                        "oauth_version=\"%s\", oauth_signature=\"%s\"",
                                        e[0], e[1], e[2], e[3], e[4], e[5], e[6]);
        for (size_t i = 0; i < 7; i++)
            free(e[i]);
    }
    free(base);
    return header;
}
