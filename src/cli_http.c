/* The admin command line's HTTPS requests (see cli_http.h). */
#include "cli_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "util.h"

long cli_http_request(const cli_conn_t *c, const char *method, const char *path, const char *auth_header,
                      const char *content_type, const void *body, size_t body_len, curl_buffer_t *out)
{
    memset(out, 0, sizeof *out);
    char *url = util_strdup_printf("%s%s", c->server, path);
    char *cacert = c->cacert ? strdup(c->cacert) : util_strdup_printf("%s/ca.pem", c->data_dir);
    char *ct = content_type ? util_strdup_printf("Content-Type: %s", content_type) : NULL;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    long status = -1;
    if (!h || !url || !cacert || (content_type && !ct)) {
        fprintf(stderr, "orchard: out of memory\n");
        goto done;
    }
    if (auth_header)
        hdrs = curl_slist_append(hdrs, auth_header);
    if (ct)
        hdrs = curl_slist_append(hdrs, ct);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "orchard: %s %s: %s\n", method, url, curl_easy_strerror(cc));
        curl_buffer_free(out);
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
done:
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    free(url);
    free(cacert);
    free(ct);
    return status;
}

char *cli_read_secret(const cli_conn_t *c, const char *name, const char *what)
{
    char *path = util_strdup_printf("%s/%s", c->data_dir, name);
    char *s = path ? util_read_file(path, 4096, NULL) : NULL;
    if (s)
        s[strcspn(s, "\r\n")] = '\0';
    else
        fprintf(stderr, "orchard: no %s: cannot read %s\n", what, path ? path : name);
    free(path);
    return s;
}

int cli_api_call(const cli_conn_t *c, const char *method, const char *path, const char *body, size_t body_len)
{
    char *key = c->api_key ? strdup(c->api_key) : NULL;
    if (!c->api_key) {
        key = cli_read_secret(c, "api.key", "API key (use --api-key, ORCHARD_API_KEY, or --data-dir with api.key)");
        if (!key)
            return 2;
    }
    char *auth = util_strdup_printf("Authorization: Bearer %s", key ? key : "");
    curl_buffer_t out;
    long status = auth ? cli_http_request(c, method, path, auth, body ? "application/xml" : NULL, body, body_len, &out)
                       : -1;
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    if (status < 0)
        return 1;
    json_t *j = out.data ? json_loads(out.data, 0, NULL) : NULL;
    if (j) {
        char *pretty = json_dumps(j, JSON_INDENT(2));
        if (pretty)
            printf("%s\n", pretty);
        free(pretty);
        json_decref(j);
    } else if (out.data) {
        fputs(out.data, stdout);
    }
    curl_buffer_free(&out);
    if (status < 200 || status >= 300)
        fprintf(stderr, "orchard: server answered %ld\n", status);
    return status >= 200 && status < 300 ? 0 : 1;
}
