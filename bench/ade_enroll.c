/* ADE configuration URL benchmark.
 *
 * Starts two release servers with a test "Apple" CA as --machineinfo-ca:
 * one without authentication, one with --ade-auth (HTTP Digest, SHA-256).
 * Every enrolling serial is put into each server's database as an assigned
 * ADE device first (one ade_devices_apply batch), as the device sync would.
 * Measured, in the same run:
 *   idle:   Status=Idle round trips from one enrolled device per thread on
 *           the first server (the core protocol round trip);
 *   ade:    configuration-URL enrollments: MachineInfo POST → signed profile
 *           with a one-time SCEP challenge bound to the UDID (lookup of the
 *           serial, challenge write, "enrolled through ADE" write, CMS
 *           signature);
 *   digest: the same with Digest, as a device does it: POST → 401 with the
 *           challenge → POST with Authorization → profile.
 * MachineInfo signing (client side) is inside the timing and each POST
 * opens a new TLS connection, as a device in Setup Assistant does.
 * Usage: ade_enroll [--threads T] [--devices N] (N per thread), with
 * ORCHARD_BIN pointing at the server binary.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>

#include "devsim.h"
#include "digest_auth.h"
#include "plist.h"
#include "store.h"
#include "testpki.h"
#include "testserver.h"
#include "util.h"

#define TOPIC "com.apple.mgmt.External.cccccccc-dddd-eeee-ffff-000000000000"
#define REALM "Bench Enrollment"

static testserver_t srv, srv_auth;
static char apple_pem[128], apple_key[128];

typedef struct {
    int index, ndevices, idles, errors;
    const testserver_t *target;
    int digest;
    devsim_t *dev;
    EVP_PKEY *key, *mkey;
    X509 *cert, *mcert;
    double *lat_ms;
} client_t;

typedef struct {
    long status;
    char *body;
    size_t len;
    char challenge[1024];
} reply_t;

static size_t body_cb(char *p, size_t size, size_t n, void *ud)
{
    reply_t *r = ud;
    size_t len = size * n;
    char *b = realloc(r->body, r->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, len);
    r->len += len;
    b[r->len] = '\0';
    r->body = b;
    return len;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    reply_t *r = ud;
    size_t len = size * n;
    /* The first challenge is SHA-256 (the user file has only SHA-256). */
    if (len > 18 && strncasecmp(p, "WWW-Authenticate: ", 18) == 0 && !r->challenge[0])
        snprintf(r->challenge, sizeof r->challenge, "%.*s", (int)(len - 18), p + 18);
    return len;
}

static int post(const testserver_t *s, const void *body, size_t len, const char *authorization, reply_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/enroll/ade", s->base_url);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/pkcs7-signature");
    char *line = authorization ? util_strdup_printf("Authorization: %s", authorization) : NULL;
    if (line)
        h = curl_slist_append(h, line);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    int rc = curl_easy_perform(c) == CURLE_OK ? 0 : -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(line);
    return rc;
}

static unsigned char *machineinfo(client_t *c, const char *udid, const char *serial, size_t *len)
{
    plist_t *d = plist_new_dict();
    plist_dict_set(d, "UDID", plist_new_string(udid));
    plist_dict_set(d, "SERIAL", plist_new_string(serial));
    plist_dict_set(d, "PRODUCT", plist_new_string("iPhone16,1"));
    plist_dict_set(d, "VERSION", plist_new_string("22B83"));
    plist_dict_set(d, "OS_VERSION", plist_new_string("18.1"));
    plist_dict_set(d, "LANGUAGE", plist_new_string("en"));
    size_t xl = 0;
    char *xml = plist_to_xml(d, &xl);
    plist_free(d);
    BIO *in = xml ? BIO_new_mem_buf(xml, (int)xl) : NULL;
    CMS_ContentInfo *cms = in ? CMS_sign(c->mcert, c->mkey, NULL, in, CMS_BINARY) : NULL;
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

static char *param(const char *ch, const char *name)
{
    char k[32];
    snprintf(k, sizeof k, "%s=\"", name);
    const char *p = strstr(ch, k);
    if (!p)
        return NULL;
    p += strlen(k);
    return strndup(p, strcspn(p, "\""));
}

static char *authorization(const char *challenge)
{
    char *nonce = param(challenge, "nonce"), *opaque = param(challenge, "opaque");
    char ha1[65], ha2[65], resp[65];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char *out = NULL;
    if (nonce && opaque && digest_ha1("SHA-256", "bench", REALM, "bench-pw", ha1) == 0) {
        EVP_Digest("POST:/enroll/ade", 16, md, &n, EVP_sha256(), NULL);
        util_hex(md, n, ha2);
        char *s = util_strdup_printf("%s:%s:00000001:c0ffee:auth:%s", ha1, nonce, ha2);
        EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
        util_hex(md, n, resp);
        free(s);
        out = util_strdup_printf("Digest username=\"bench\", realm=\"" REALM "\", nonce=\"%s\", uri=\"/enroll/ade\", "
                                 "algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"%s\", "
                                 "opaque=\"%s\"",
                                 nonce, resp, opaque);
    }
    free(nonce);
    free(opaque);
    return out;
}

static int enroll_one(client_t *c, int n)
{
    char udid[64], serial[64];
    snprintf(udid, sizeof udid, "BENCH-ADE-UDID-%02d-%06d", c->index, n);
    snprintf(serial, sizeof serial, "BENCHSN%02d%06d", c->index, n);
    size_t len = 0;
    unsigned char *mi = machineinfo(c, udid, serial, &len);
    reply_t r;
    memset(&r, 0, sizeof r);
    int ok = mi && post(c->target, mi, len, NULL, &r) == 0;
    if (ok && c->digest) {
        char *auth = r.status == 401 ? authorization(r.challenge) : NULL;
        free(r.body);
        r.body = NULL;
        ok = auth && post(c->target, mi, len, auth, &r) == 0;
        free(auth);
    }
    ok = ok && r.status == 200 && r.len > 1000;
    free(r.body);
    free(mi);
    return ok ? 0 : -1;
}

static void *run_enroll(void *p)
{
    client_t *c = p;
    for (int i = 0; i < c->ndevices; i++) {
        int64_t t0 = util_now_us();
        c->errors += enroll_one(c, i) != 0;
        c->lat_ms[i] = (double)(util_now_us() - t0) / 1000.0;
    }
    return NULL;
}

static void *run_idles(void *p)
{
    client_t *c = p;
    for (int i = 0; i < c->idles; i++) {
        int64_t t0 = util_now_us();
        devsim_reply_t r;
        c->errors += devsim_idle(c->dev, &r) != 0 || r.status != 200;
        devsim_reply_free(&r);
        c->lat_ms[i] = (double)(util_now_us() - t0) / 1000.0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, client_t *cl, int threads, int per, double secs)
{
    int n = threads * per, errors = 0;
    double *all = malloc((size_t)n * sizeof *all);
    for (int t = 0; t < threads; t++) {
        memcpy(all + t * per, cl[t].lat_ms, (size_t)per * sizeof *all);
        errors += cl[t].errors;
        cl[t].errors = 0;
    }
    qsort(all, (size_t)n, sizeof *all, cmp_double);
    printf("%-38s %8d in %6.2f s = %9.1f /s   p50 %7.2f ms   p99 %7.2f ms   errors %d\n", what, n, secs, n / secs,
           all[n / 2], all[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], errors);
    free(all);
}

/* Every bench serial, assigned, in one batch per server. */
static int assign_all(const testserver_t *s, int threads, int per)
{
    char *url = util_strdup_printf("sqlite:%s/orchard.db", s->dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    free(url);
    free(err);
    if (!st)
        return -1;
    ade_token_t t = {.name = "bench", .sealed = (unsigned char *)"x", .sealed_len = 1};
    size_t n = (size_t)threads * (size_t)per;
    ade_device_t *d = calloc(n, sizeof *d);
    int *applied = calloc(n, sizeof *applied);
    char (*serials)[32] = calloc(n, sizeof *serials);
    int rc = d && applied && serials && st->ops->ade_token_put(st, &t, util_now()) == STORE_OK ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        snprintf(serials[i], sizeof serials[i], "BENCHSN%02d%06d", (int)(i / (size_t)per), (int)(i % (size_t)per));
        d[i].serial_number = serials[i];
        d[i].token_name = "bench";
        d[i].op_type = "added";
        d[i].op_date = 1700000000;
    }
    size_t added = 0;
    if (rc == 0 && st->ops->ade_devices_apply(st, d, n, util_now(), applied, &added) != STORE_OK)
        rc = -1;
    free(d);
    free(applied);
    free(serials);
    store_close(st);
    return rc;
}

int main(int argc, char **argv)
{
    int threads = 4, per = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--devices") == 0)
            per = atoi(argv[i + 1]);
    }
    if (threads < 1 || threads > 64 || per < 1 || per > 999999) {
        fprintf(stderr, "usage: ade_enroll [--threads 1..64] [--devices N]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char dir[64] = "/tmp/orchard-bench-ade-XXXXXX";
    if (!mkdtemp(dir) || testpki_make_ca(dir, "appleca") != 0)
        return 1;
    snprintf(apple_pem, sizeof apple_pem, "%s/appleca.pem", dir);
    snprintf(apple_key, sizeof apple_key, "%s/appleca.key", dir);
    char users[128], ha1[65];
    snprintf(users, sizeof users, "%s/users.digest", dir);
    FILE *f = fopen(users, "w");
    if (!f || digest_ha1("SHA-256", "bench", REALM, "bench-pw", ha1) != 0)
        return 1;
    fprintf(f, "bench:%s:%s\n", REALM, ha1);
    fclose(f);
    /* Every enrollment comes from one client address: no per-address limit. */
    const char *args[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--log-level", "warn",
                          "--enroll-rate", "0", NULL};
    const char *args_auth[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--log-level", "warn",
                               "--ade-auth", users, "--enroll-rate", "0", NULL};
    if (testserver_start(&srv, args) != 0 || testserver_start(&srv_auth, args_auth) != 0)
        return 1;
    int rc = 0;
    client_t *cl = calloc((size_t)threads, sizeof *cl);
    int idles = per * 5;
    if (assign_all(&srv, threads, per) != 0 || assign_all(&srv_auth, threads, per) != 0) {
        fprintf(stderr, "cannot assign the bench serials\n");
        rc = 1;
        goto out;
    }
    for (int t = 0; t < threads; t++) {
        client_t *c = &cl[t];
        char udid[64];
        snprintf(udid, sizeof udid, "BENCH-ADE-IDLE-%02d", t);
        c->index = t;
        c->ndevices = per;
        c->idles = idles;
        c->lat_ms = calloc((size_t)idles, sizeof(double));
        if (testserver_device_identity(&srv, udid, &c->key, &c->cert) != 0 ||
            testpki_issue_device_identity(apple_pem, apple_key, "device", &c->mkey, &c->mcert) != 0 ||
            !(c->dev = devsim_new(srv.base_url, srv.ca_path, udid, c->key, c->cert, DEVSIM_AUTH_BOTH)) ||
            devsim_authenticate(c->dev) != 200 || devsim_token_update(c->dev) != 200) {
            fprintf(stderr, "client %d setup failed\n", t);
            rc = 1;
            goto out;
        }
    }
    printf("ADE configuration URL: %d client threads, %d enrollments per thread and mode\n", threads, per);
    pthread_t th[64];
    for (int phase = 0; phase < 3; phase++) {
        for (int t = 0; t < threads; t++) {
            cl[t].target = phase == 2 ? &srv_auth : &srv;
            cl[t].digest = phase == 2;
            /* The Digest phase enrolls the same serials on the other server. */
        }
        int64_t t0 = util_now_us();
        for (int t = 0; t < threads; t++)
            pthread_create(&th[t], NULL, phase == 0 ? run_idles : run_enroll, &cl[t]);
        for (int t = 0; t < threads; t++)
            pthread_join(th[t], NULL);
        double secs = (double)(util_now_us() - t0) / 1e6;
        if (phase == 0)
            report("core round trip (Idle)", cl, threads, idles, secs);
        else if (phase == 1)
            report("ADE enrollments (1 POST → profile)", cl, threads, per, secs);
        else
            report("ADE enrollments with Digest (401 + POST)", cl, threads, per, secs);
    }
out:
    for (int t = 0; t < threads; t++) {
        devsim_free(cl[t].dev);
        EVP_PKEY_free(cl[t].key);
        EVP_PKEY_free(cl[t].mkey);
        X509_free(cl[t].cert);
        X509_free(cl[t].mcert);
        free(cl[t].lat_ms);
    }
    free(cl);
    if (testserver_stop(&srv) != 0 || testserver_stop(&srv_auth) != 0)
        rc = 1;
    char *cmd = util_strdup_printf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    free(cmd);
    curl_global_cleanup();
    return rc;
}
