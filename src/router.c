/* Maps request paths to handlers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "app.h"
#include "ratelimit.h"
#include "util.h"

#define CHECKIN_CONTENT_TYPE "application/x-apple-aspen-mdm-checkin"

static int device_method_ok(const http_request_t *req, http_response_t *resp)
{
    /* Devices PUT; POST is accepted for tools that cannot. */
    if (req->method == HTTP_M_PUT || req->method == HTTP_M_POST)
        return 1;
    http_refuse(resp, 405, 0, "%s is not allowed here; devices use PUT", req->method_name);
    http_add_header(resp, "Allow", "PUT, POST");
    return 0;
}

/* Single-URL profiles (no CheckInURL) send both kinds to ServerURL: a
 * check-in carries MessageType (and its own Content-Type), a command report
 * does not. */
void mdm_single_url_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    mdm_message_t m;
    char why[256];
    if (mdm_message_parse(req->body, req->body_len, &m, why, sizeof why) != 0) {
        http_refuse(resp, 400, 0, "device message: %s", why);
        return;
    }
    const char *ct = http_header(req, "Content-Type");
    if (m.message_type || (ct && strncmp(ct, CHECKIN_CONTENT_TYPE, strlen(CHECKIN_CONTENT_TYPE)) == 0))
        mdm_checkin_dispatch(w, req, &m, resp);
    else
        mdm_connect_dispatch(w, req, &m, resp);
    mdm_message_free(&m);
}

static int under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Enrollment and SCEP answer anyone on the network and cost signatures and
 * database writes, so each client address gets a token bucket per endpoint
 * (--enroll-rate, --enroll-burst). 1 = go on; 0 = answered 429. */
static int enroll_rate_ok(worker_t *w, const http_request_t *req, http_response_t *resp, const char *endpoint)
{
    if (!w->enroll_limit)
        return 1;
    char key[RATELIMIT_KEY_MAX];
    ratelimit_client_key(endpoint, req->client ? req->client : req->remote, key, sizeof key);
    int retry = 1;
    if (ratelimit_take(w->enroll_limit, key, util_now_us(), &retry) == 0)
        return 1;
    const config_t *cfg = w->app->cfg;
    http_refuse(resp, 429, 0, "rate limit: %s sent more than %g requests/s (burst %d) to %s; retry in %d s",
                req->client ? req->client : req->remote ? req->remote : "-", cfg->enroll_rate, cfg->enroll_burst,
                endpoint, retry);
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry);
    http_add_header(resp, "Retry-After", ra);
    return 0;
}

/* A client-address limit alone does not hold a device identity: a captured
 * MachineInfo blob or SCEP key replayed from many addresses would pass it.
 * So each verified identity gets a bucket of its own too
 * (--enroll-identity-rate, --enroll-identity-burst), keyed by a hash of
 * endpoint and identity so a long identity cannot be cut into another's. */
int enroll_identity_ok(worker_t *w, const char *endpoint, const char *identity, http_response_t *resp)
{
    if (!w->identity_limit || !identity || !*identity)
        return 1;
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *material = util_strdup_printf("%s|%s", endpoint, identity);
    if (!material)
        return 1; /* a limiter must not turn into an outage */
    SHA256((const unsigned char *)material, strlen(material), md);
    free(material);
    char key[RATELIMIT_KEY_MAX] = "id:";
    for (int i = 0; i < 16; i++)
        snprintf(key + 3 + 2 * i, sizeof key - 3 - 2 * (size_t)i, "%02x", md[i]);
    int retry = 1;
    if (ratelimit_take(w->identity_limit, key, util_now_us(), &retry) == 0)
        return 1;
    const config_t *cfg = w->app->cfg;
    http_refuse(resp, 429, 0, "rate limit: identity %.100s sent more than %g requests/min (burst %d) to %s; retry in %d s",
                identity, cfg->enroll_identity_rate * 60, cfg->enroll_identity_burst, endpoint, retry);
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry);
    http_add_header(resp, "Retry-After", ra);
    return 0;
}

void app_route(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    const char *p = req->path;
    if ((under(p, "/enroll") && !enroll_rate_ok(w, req, resp, "/enroll")) ||
        (under(p, "/scep") && !enroll_rate_ok(w, req, resp, "/scep")))
        return;
    if (strcmp(p, "/mdm/checkin") == 0) {
        if (device_method_ok(req, resp))
            mdm_checkin_handle(w, req, resp);
    } else if (strcmp(p, "/mdm/connect") == 0) {
        if (device_method_ok(req, resp))
            mdm_connect_handle(w, req, resp);
    } else if (strcmp(p, "/mdm") == 0) {
        if (device_method_ok(req, resp))
            mdm_single_url_handle(w, req, resp);
    } else if (strncmp(p, "/mdm/assets/", 12) == 0) {
        mdm_asset_handle(w, req, resp);
    } else if (strncmp(p, "/v1/", 4) == 0) {
        admin_api_handle(w, req, resp);
    } else if (strcmp(p, "/scep") == 0 || strncmp(p, "/scep/", 6) == 0) {
        scep_http_handle(w, req, resp);
    } else if (strcmp(p, "/enroll/ade") == 0) {
        ade_enroll_handle(w, req, resp);
    } else if (strcmp(p, "/enroll/watch") == 0) {
        watch_http_handle(w, req, resp);
    } else if (strcmp(p, "/enroll") == 0) {
        enroll_http_handle(w, req, resp);
    } else if (strcmp(p, "/migration") == 0) {
        migration_http_handle(w, req, resp);
    } else if (strcmp(p, "/healthz") == 0 && req->method == HTTP_M_GET) {
        http_reply(resp, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(p, "/bench/noop") == 0 && w->app->cfg->noop_endpoint) {
        http_reply(resp, 200, NULL, NULL, 0);
    } else {
        http_refuse(resp, 404, 1, "no such endpoint: %.100s", p);
    }
}
