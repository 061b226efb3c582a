/* Apple Watch enrollment client pieces (see watchsim.h). */
#include "watchsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/cms.h>

#include "plist.h"

unsigned char *watchsim_machineinfo(X509 *cert, EVP_PKEY *key, const char *udid, const char *serial,
                                    const void *token, size_t token_len, size_t *len)
{
    *len = 0;
    plist_t *d = plist_new_dict();
    plist_dict_set(d, "UDID", plist_new_string(udid));
    plist_dict_set(d, "SERIAL", plist_new_string(serial));
    plist_dict_set(d, "PRODUCT", plist_new_string("Watch7,1"));
    plist_dict_set(d, "VERSION", plist_new_string("22S555"));
    plist_dict_set(d, "OS_VERSION", plist_new_string("11.1"));
    plist_dict_set(d, "LANGUAGE", plist_new_string("en"));
    if (token)
        plist_dict_set(d, "PAIRING_TOKEN", plist_new_data(token, token_len));
    size_t xml_len = 0;
    char *xml = plist_to_xml(d, &xml_len);
    plist_free(d);
    BIO *in = xml ? BIO_new_mem_buf(xml, (int)xml_len) : NULL;
    CMS_ContentInfo *cms = in ? CMS_sign(cert, key, NULL, in, CMS_BINARY) : NULL;
    unsigned char *der = NULL;
    int n = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
    unsigned char *copy = n > 0 ? malloc((size_t)n) : NULL;
    if (copy) {
        memcpy(copy, der, (size_t)n);
        *len = (size_t)n;
    }
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    free(xml);
    return copy;
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    watchsim_reply_t *r = ud;
    size_t n = size * nmemb;
    unsigned char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, ptr, n);
    r->len += n;
    b[r->len] = '\0';
    r->body = b;
    return n;
}

int watchsim_post(const char *base_url, const char *server_ca, const void *body, size_t len, watchsim_reply_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[512];
    snprintf(url, sizeof url, "%s/enroll/watch", base_url);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/pkcs7-signature");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, server_ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
    } else {
        fprintf(stderr, "watchsim: POST %s: %s\n", url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

void watchsim_reply_free(watchsim_reply_t *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

char *watchsim_security_token(const watchsim_reply_t *r)
{
    json_t *j = r->body ? json_loadb((const char *)r->body, r->len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *st = json_string_value(json_object_get(json_object_get(j, "details"), "security-token"));
    char *out = code && strcmp(code, "com.apple.watch.pairing.token.missing") == 0 && st ? strdup(st) : NULL;
    json_decref(j);
    return out;
}

long watchsim_get_token(devsim_t *phone, const char *service, const char *security_token, const char *phone_udid,
                        const char *watch_udid, unsigned char **token, size_t *token_len)
{
    *token = NULL;
    *token_len = 0;
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "MessageType", plist_new_string("GetToken"));
    plist_dict_set(m, "UDID", plist_new_string(devsim_udid(phone)));
    plist_dict_set(m, "TokenServiceType", plist_new_string(service ? service : "com.apple.watch.pairing"));
    plist_t *p = plist_new_dict();
    if (security_token)
        plist_dict_set(p, "SecurityToken", plist_new_string(security_token));
    if (phone_udid)
        plist_dict_set(p, "PhoneUDID", plist_new_string(phone_udid));
    if (watch_udid)
        plist_dict_set(p, "WatchUDID", plist_new_string(watch_udid));
    plist_dict_set(m, "TokenParameters", p);
    size_t len = 0;
    char *xml = devsim_plist_xml(m, &len);
    plist_free(m);
    devsim_reply_t r;
    int rc = xml ? devsim_send(phone, "/mdm/checkin", "application/x-apple-aspen-mdm-checkin", xml, len, &r) : -1;
    free(xml);
    if (rc != 0)
        return -1;
    long status = r.status;
    if (status == 200 && r.body) {
        plist_t *reply = plist_parse(r.body, r.body_len, NULL, 0);
        size_t n = 0;
        const unsigned char *data = plist_dict_get_data(reply, "TokenData", &n);
        if (data && (*token = malloc(n + 1))) {
            memcpy(*token, data, n);
            (*token)[n] = '\0';
            *token_len = n;
        }
        plist_free(reply);
    }
    devsim_reply_free(&r);
    return status;
}
