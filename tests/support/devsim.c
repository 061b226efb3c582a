/* Device simulator (see devsim.h). */
#include "devsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
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
};

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

static plist_t *message(devsim_t *d, const char *type)
{
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "MessageType", plist_new_string(type));
    plist_dict_set(m, "UDID", plist_new_string(d->udid));
    plist_dict_set(m, "Topic", plist_new_string("com.apple.mgmt.External.orchard-test"));
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
    return send_connect(d, m, r);
}

int devsim_report(devsim_t *d, const char *uuid, const char *status, plist_t *extra, devsim_reply_t *r)
{
    /* The result's own keys go in the same dict as the envelope. */
    plist_t *m = extra ? extra : plist_new_dict();
    plist_dict_set(m, "UDID", plist_new_string(d->udid));
    plist_dict_set(m, "CommandUUID", plist_new_string(uuid));
    plist_dict_set(m, "Status", plist_new_string(status));
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
