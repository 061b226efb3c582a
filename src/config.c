/* `orchard serve` configuration parsing. */
#include "config.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ade_min_os.h"
#include "util.h"

enum {
    OPT_LISTEN = 256,
    OPT_DATA_DIR,
    OPT_DB,
    OPT_PUBLIC_URL,
    OPT_API_KEY,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_CLIENT_CA,
    OPT_CLIENT_CERT_HEADER,
    OPT_INSECURE_HTTP,
    OPT_LOG_LEVEL,
    OPT_MAX_BODY,
    OPT_WORKERS,
    OPT_TIMEOUT,
    OPT_NOOP,
    OPT_SCEP_CHALLENGE,
    OPT_ENROLL_SECRET,
    OPT_ADMISSION,
    OPT_CERT_DAYS,
    OPT_MACHINEINFO_CA,
    OPT_PUSH_CERT,
    OPT_PUSH_TOPIC,
    OPT_PUSH_KEY,
    OPT_APNS_URL,
    OPT_APNS_DEVELOPMENT,
    OPT_APNS_CA,
    OPT_PUSH_EXPIRATION,
    OPT_PUSH_COALESCE,
    OPT_PUSH_TIMEOUT,
    OPT_PUSH_ATTEMPTS,
    OPT_PUSH_THREADS,
    OPT_REPUSH_AFTER,
    OPT_INACTIVE_AFTER,
    OPT_ORG_NAME,
    OPT_WATCH_TOKEN_TTL,
    OPT_MAX_CONNECTIONS,
    OPT_ENROLL_RATE,
    OPT_ENROLL_BURST,
    OPT_ENROLL_IDENTITY_RATE,
    OPT_ENROLL_IDENTITY_BURST,
    OPT_TRUSTED_PROXY,
    OPT_ADE_AUTH,
    OPT_ADE_AUTH_NONCE_TTL,
    OPT_ADE_MIN_OS,
    OPT_ADE_MIN_BUILD,
    OPT_ADE_URL,
    OPT_ADE_CA,
    OPT_ADE_SYNC_INTERVAL,
    OPT_HELP
};

/* One table drives getopt, the environment names and --help. */
static const struct setting {
    const char *flag;
    int has_arg;
    int id;
    const char *env;
    const char *arg;
    const char *help;
} settings[] = {
    {"listen", 1, OPT_LISTEN, "ORCHARD_LISTEN", "ADDR:PORT", "address to listen on (default 0.0.0.0:8443)"},
    {"data-dir", 1, OPT_DATA_DIR, "ORCHARD_DATA_DIR", "DIR",
     "state directory: database, CA, TLS certificate, API key (default ./var)"},
    {"db", 1, OPT_DB, "ORCHARD_DB", "URL",
     "database: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE (default sqlite:DIR/orchard.db); "
     "PostgreSQL: one connection per worker thread (--workers) plus one per push thread and one for the "
     "inactivity sweep; prefer the environment variable for a URL with a password"},
    {"public-url", 1, OPT_PUBLIC_URL, "ORCHARD_PUBLIC_URL", "URL",
     "base URL devices use to reach orchard, put into profiles (default https://HOSTNAME:PORT)"},
    {"api-key", 1, OPT_API_KEY, "ORCHARD_API_KEY", "KEY",
     "admin API key (default: generated once and stored in DIR/api.key); prefer the environment "
     "variable, flags are visible in the process list"},
    {"tls-cert", 1, OPT_TLS_CERT, "ORCHARD_TLS_CERT", "FILE",
     "TLS server certificate chain, PEM (default DIR/tls.pem, created on first start)"},
    {"tls-key", 1, OPT_TLS_KEY, "ORCHARD_TLS_KEY", "FILE", "TLS server private key, PEM (default DIR/tls.key)"},
    {"client-ca", 1, OPT_CLIENT_CA, "ORCHARD_CLIENT_CA", "FILE",
     "CA bundle that device identity certificates must chain to (default DIR/ca.pem)"},
    {"client-cert-header", 1, OPT_CLIENT_CERT_HEADER, "ORCHARD_CLIENT_CERT_HEADER", "NAME",
     "trust this request header for the device certificate (URL-escaped PEM or RFC 9440); only "
     "behind a proxy that always sets it"},
    {"insecure-http", 0, OPT_INSECURE_HTTP, "ORCHARD_INSECURE_HTTP", NULL,
     "serve plain HTTP; only behind a TLS-terminating proxy"},
    {"log-level", 1, OPT_LOG_LEVEL, "ORCHARD_LOG_LEVEL", "LEVEL", "debug, info, warn or error (default info)"},
    {"max-body", 1, OPT_MAX_BODY, "ORCHARD_MAX_BODY", "BYTES", "largest accepted request body (default 2097152)"},
    {"workers", 1, OPT_WORKERS, "ORCHARD_WORKERS", "N", "worker threads (default: 4 per CPU, at least 4)"},
    {"timeout", 1, OPT_TIMEOUT, "ORCHARD_TIMEOUT", "SECONDS",
     "read/write/idle timeout of a connection (default 30)"},
    {"enable-noop-endpoint", 0, OPT_NOOP, "ORCHARD_ENABLE_NOOP_ENDPOINT", NULL,
     "serve PUT /bench/noop (an empty 200), the benchmark's ceiling for the HTTP stack"},
    {"scep-challenge", 1, OPT_SCEP_CHALLENGE, "ORCHARD_SCEP_CHALLENGE", "SECRET",
     "static SCEP challenge password (default: none; profiles carry one-time challenges)"},
    {"enroll-secret", 1, OPT_ENROLL_SECRET, "ORCHARD_ENROLL_SECRET", "SECRET",
     "secret for GET /enroll (?secret= or HTTP Basic password; default generated into DIR/enroll.secret)"},
    {"admission", 1, OPT_ADMISSION, "ORCHARD_ADMISSION", "POLICY",
     "who may enroll through POST /enroll: open, or known (registered serials/UDIDs) (default open)"},
    {"cert-days", 1, OPT_CERT_DAYS, "ORCHARD_CERT_DAYS", "DAYS", "validity of issued device certificates (default 365)"},
    {"machineinfo-ca", 1, OPT_MACHINEINFO_CA, "ORCHARD_MACHINEINFO_CA", "FILE",
     "CA bundle that MachineInfo signers must chain to (Apple's device CAs); unset closes POST /enroll"},
    {"push-cert", 1, OPT_PUSH_CERT, "ORCHARD_PUSH_CERT", "FILE[,FILE...]",
     "APNs MDM push certificate(s), PEM, one per topic (default DIR/push.pem when present; see orchard "
     "pushcert); re-read when the file changes"},
    {"push-key", 1, OPT_PUSH_KEY, "ORCHARD_PUSH_KEY", "FILE[,FILE...]",
     "private key(s) of the push certificate(s), same order (default: beside the certificate, .pem → .key)"},
    {"apns-url", 1, OPT_APNS_URL, "ORCHARD_APNS_URL", "URL",
     "APNs base URL (default https://api.push.apple.com)"},
    {"apns-development", 0, OPT_APNS_DEVELOPMENT, "ORCHARD_APNS_DEVELOPMENT", NULL,
     "use Apple's development APNs endpoint (https://api.sandbox.push.apple.com)"},
    {"apns-ca", 1, OPT_APNS_CA, "ORCHARD_APNS_CA", "FILE",
     "CA bundle that the APNs server certificate must chain to (default: the system store)"},
    {"push-expiration", 1, OPT_PUSH_EXPIRATION, "ORCHARD_PUSH_EXPIRATION", "SECONDS",
     "how long APNs keeps trying to deliver a push (default 86400; 0 = once only)"},
    {"push-coalesce-ms", 1, OPT_PUSH_COALESCE, "ORCHARD_PUSH_COALESCE_MS", "MS",
     "push each device at most once per this window, however many commands are queued (default 500)"},
    {"push-timeout", 1, OPT_PUSH_TIMEOUT, "ORCHARD_PUSH_TIMEOUT", "SECONDS",
     "time limit of one APNs request (default 10)"},
    {"push-attempts", 1, OPT_PUSH_ATTEMPTS, "ORCHARD_PUSH_ATTEMPTS", "N",
     "attempts per push when APNs is busy or unreachable (429, 5xx, network), with backoff (default 5)"},
    {"push-threads", 1, OPT_PUSH_THREADS, "ORCHARD_PUSH_THREADS", "N",
     "push threads, each with its own APNs connections (default 2 with 2 or more CPUs, else 1)"},
    {"repush-after", 1, OPT_REPUSH_AFTER, "ORCHARD_REPUSH_AFTER", "HOURS",
     "push active devices not heard from for this long again, at most once per this interval each; "
     "a number is hours, or give a unit: 90m, 2d, 30s (default 24; 0 = never)"},
    {"inactive-after", 1, OPT_INACTIVE_AFTER, "ORCHARD_INACTIVE_AFTER", "DAYS",
     "flag active devices not heard from for this long as inactive (GET /v1/devices?silent=1, event "
     "marked_inactive); a number is days, or give a unit: 12h, 30s (default 30; 0 = never)"},
    {"push-topic", 1, OPT_PUSH_TOPIC, "ORCHARD_PUSH_TOPIC", "TOPIC",
     "push topic for profiles, overriding the one read from the push certificate"},
    {"org-name", 1, OPT_ORG_NAME, "ORCHARD_ORG_NAME", "NAME", "organization shown in profiles (default orchard)"},
    {"watch-token-ttl", 1, OPT_WATCH_TOKEN_TTL, "ORCHARD_WATCH_TOKEN_TTL", "SECONDS",
     "lifetime of Apple Watch security and pairing tokens (default 600)"},
    {"max-connections", 1, OPT_MAX_CONNECTIONS, "ORCHARD_MAX_CONNECTIONS", "N",
     "open TLS connections across all workers; beyond it new connections are closed at once (default 4096)"},
    {"enroll-rate", 1, OPT_ENROLL_RATE, "ORCHARD_ENROLL_RATE", "N[/s|/m|/h]",
     "requests per client address to /enroll and /scep (each its own bucket); over it: 429 with Retry-After "
     "(default 50/s; 0 = no limit)"},
    {"enroll-burst", 1, OPT_ENROLL_BURST, "ORCHARD_ENROLL_BURST", "N",
     "requests a client address may send at once before --enroll-rate applies (default 200)"},
    {"enroll-identity-rate", 1, OPT_ENROLL_IDENTITY_RATE, "ORCHARD_ENROLL_IDENTITY_RATE", "N[/s|/m|/h]",
     "requests per enrolling identity (the signed MachineInfo's UDID on /enroll*, the SCEP message's signer "
     "certificate on /scep), from any address; over it: 429 (default 1/m; 0 = no limit)"},
    {"enroll-identity-burst", 1, OPT_ENROLL_IDENTITY_BURST, "ORCHARD_ENROLL_IDENTITY_BURST", "N",
     "requests one identity may send at once before --enroll-identity-rate applies (default 20)"},
    {"trusted-proxy", 1, OPT_TRUSTED_PROXY, "ORCHARD_TRUSTED_PROXY", "ADDR[,ADDR...]",
     "reverse proxies whose X-Forwarded-For (its last entry) names the client for rate limits; "
     "without it the header is ignored"},
    {"ade-auth", 1, OPT_ADE_AUTH, "ORCHARD_ADE_AUTH", "FILE",
     "ask people enrolling through ADE for a user name and password (HTTP Digest) checked against this "
     "file of user:realm:HA1 lines (htdigest format; re-read when it changes); unset = no authentication"},
    {"ade-auth-nonce-ttl", 1, OPT_ADE_AUTH_NONCE_TTL, "ORCHARD_ADE_AUTH_NONCE_TTL", "SECONDS",
     "lifetime of a Digest nonce on the ADE configuration URL (default 300)"},
    {"ade-min-os", 1, OPT_ADE_MIN_OS, "ORCHARD_ADE_MIN_OS", "SPEC",
     "refuse ADE enrollment below this OS with com.apple.softwareupdate.required, so the device updates in "
     "Setup Assistant first: a version for every platform (17.4) and/or per platform "
     "(iOS:17.4:21E219,macOS:14.6; iOS, macOS, tvOS, visionOS, watchOS) (default: any version)"},
    {"ade-min-build", 1, OPT_ADE_MIN_BUILD, "ORCHARD_ADE_MIN_BUILD", "BUILD",
     "build named with the bare --ade-min-os version in the software update request (e.g. 21E219)"},
    {"ade-url", 1, OPT_ADE_URL, "ORCHARD_ADE_URL", "URL",
     "Apple's device enrollment services for ADE (default https://mdmenrollment.apple.com)"},
    {"ade-ca", 1, OPT_ADE_CA, "ORCHARD_ADE_CA", "FILE",
     "CA bundle that the ADE service's certificate must chain to (default: the system store)"},
    {"ade-sync-interval", 1, OPT_ADE_SYNC_INTERVAL, "ORCHARD_ADE_SYNC_INTERVAL", "MINUTES",
     "how often each ADE server token's devices are synced; a number is minutes, or give a unit: 30s, 1h "
     "(default 30; 0 = only when asked: orchard ade token sync)"},
    {"help", 0, OPT_HELP, NULL, NULL, "show this help"},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

void config_usage(FILE *out)
{
    fprintf(out, "usage: orchard serve [options]\n\n"
                 "Runs the MDM server: check-in and command endpoints for devices (/mdm/checkin,\n"
                 "/mdm/connect, /mdm) and the admin API (/v1/...). Every option can also be set\n"
                 "with the environment variable shown; a flag wins over the environment.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", settings[i].flag, settings[i].arg ? " " : "",
                 settings[i].arg ? settings[i].arg : "");
        fprintf(out, "  %-32s %s\n", left, settings[i].help);
        if (settings[i].env)
            fprintf(out, "  %-32s [env %s]\n", "", settings[i].env);
    }
}

static int parse_long(const char *name, const char *v, long min, long max, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        fprintf(stderr, "orchard serve: --%s must be a whole number from %ld to %ld (got '%s')\n", name, min,
                max, v);
        return -1;
    }
    *out = n;
    return 0;
}

/* A duration: a whole number in `unit` seconds, or with a suffix s, m, h
 * or d (so tests and small fleets can use short intervals). */
static int parse_duration(const char *name, const char *v, long unit, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    long mult = unit;
    if (end != v && *end && !end[1]) {
        switch (*end) {
        case 's': mult = 1; end++; break;
        case 'm': mult = 60; end++; break;
        case 'h': mult = 3600; end++; break;
        case 'd': mult = 86400; end++; break;
        default: break;
        }
    }
    if (*v == '\0' || *end != '\0' || n < 0 || n > 3650L * 86400 / mult) {
        fprintf(stderr, "orchard serve: --%s must be a whole number, optionally with s, m, h or d (got '%s')\n",
                name, v);
        return -1;
    }
    *out = n * mult;
    return 0;
}

/* "N", "N/s", "N/m" or "N/h" (N may have a fraction) as a rate per second. */
static int parse_rate(const char *name, const char *v, double *out)
{
    char *end;
    double n = strtod(v, &end);
    double per = 1;
    if (*end == '/') {
        if (strcmp(end, "/s") == 0)
            per = 1;
        else if (strcmp(end, "/m") == 0)
            per = 60;
        else if (strcmp(end, "/h") == 0)
            per = 3600;
        else
            per = 0;
        end += per ? 2 : 0;
    }
    if (end == v || *end != '\0' || !(n >= 0) || n > 1e6 || per == 0) {
        fprintf(stderr, "orchard serve: --%s takes N, N/s, N/m or N/h (got '%s')\n", name, v);
        return -1;
    }
    *out = n / per;
    return 0;
}

/* Every entry of a comma-separated list must be a literal IP address. */
static int valid_address_list(const char *name, const char *v)
{
    char *copy = strdup(v), *save = NULL;
    int ok = copy != NULL && *v != '\0';
    for (char *a = copy ? strtok_r(copy, ",", &save) : NULL; a && ok; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ')
            a++;
        unsigned char bin[16];
        ok = inet_pton(AF_INET, a, bin) == 1 || inet_pton(AF_INET6, a, bin) == 1;
        if (!ok)
            fprintf(stderr, "orchard serve: --%s takes IP addresses (got '%s')\n", name, a);
    }
    free(copy);
    return ok ? 0 : -1;
}

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = strdup(v);
}

static int apply(config_t *c, const struct setting *s, const char *v)
{
    long n;
    switch (s->id) {
    case OPT_LISTEN:
        if (!strrchr(v, ':')) {
            fprintf(stderr, "orchard serve: --listen takes ADDR:PORT (got '%s')\n", v);
            return -1;
        }
        set_str(&c->listen, v);
        break;
    case OPT_DATA_DIR: set_str(&c->data_dir, v); break;
    case OPT_DB: set_str(&c->db, v); break;
    case OPT_PUBLIC_URL:
        if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0) {
            fprintf(stderr, "orchard serve: --public-url must start with https:// (got '%s')\n", v);
            return -1;
        }
        set_str(&c->public_url, v);
        break;
    case OPT_API_KEY:
        if (strlen(v) < 16) {
            fprintf(stderr, "orchard serve: --api-key must be at least 16 characters\n");
            return -1;
        }
        set_str(&c->api_key, v);
        break;
    case OPT_TLS_CERT: set_str(&c->tls_cert, v); break;
    case OPT_TLS_KEY: set_str(&c->tls_key, v); break;
    case OPT_CLIENT_CA: set_str(&c->client_ca, v); break;
    case OPT_CLIENT_CERT_HEADER: set_str(&c->client_cert_header, v); break;
    case OPT_INSECURE_HTTP: c->insecure_http = v == NULL || strcmp(v, "0") != 0; break;
    case OPT_NOOP: c->noop_endpoint = v == NULL || strcmp(v, "0") != 0; break;
    case OPT_LOG_LEVEL:
        if (log_parse_level(v, &c->log_level) != 0) {
            fprintf(stderr, "orchard serve: --log-level must be debug, info, warn or error (got '%s')\n", v);
            return -1;
        }
        break;
    case OPT_MAX_BODY:
        if (parse_long(s->flag, v, 1024, 256L * 1024 * 1024, &n))
            return -1;
        c->max_body = (size_t)n;
        break;
    case OPT_WORKERS:
        if (parse_long(s->flag, v, 1, 256, &n))
            return -1;
        c->workers = (int)n;
        break;
    case OPT_TIMEOUT:
        if (parse_long(s->flag, v, 1, 3600, &n))
            return -1;
        c->timeout_seconds = (int)n;
        break;
    case OPT_SCEP_CHALLENGE: set_str(&c->scep_challenge, v); break;
    case OPT_ENROLL_SECRET:
        if (strlen(v) < 8) {
            fprintf(stderr, "orchard serve: --enroll-secret must be at least 8 characters\n");
            return -1;
        }
        set_str(&c->enroll_secret, v);
        break;
    case OPT_ADMISSION:
        if (strcmp(v, "open") != 0 && strcmp(v, "known") != 0) {
            fprintf(stderr, "orchard serve: --admission must be open or known (got '%s')\n", v);
            return -1;
        }
        c->admission_known = strcmp(v, "known") == 0;
        break;
    case OPT_CERT_DAYS:
        if (parse_long(s->flag, v, 1, 3650, &n))
            return -1;
        c->cert_days = (int)n;
        break;
    case OPT_MACHINEINFO_CA: set_str(&c->machineinfo_ca, v); break;
    case OPT_PUSH_CERT: set_str(&c->push_cert, v); break;
    case OPT_PUSH_KEY: set_str(&c->push_key, v); break;
    case OPT_APNS_URL:
        if (strncmp(v, "https://", 8) != 0) {
            fprintf(stderr, "orchard serve: --apns-url must start with https:// (got '%s')\n", v);
            return -1;
        }
        set_str(&c->apns_url, v);
        break;
    case OPT_APNS_DEVELOPMENT: c->apns_development = v == NULL || strcmp(v, "0") != 0; break;
    case OPT_APNS_CA: set_str(&c->apns_ca, v); break;
    case OPT_PUSH_EXPIRATION:
        if (parse_long(s->flag, v, 0, 30L * 86400, &n))
            return -1;
        c->push_expiration = n;
        break;
    case OPT_PUSH_COALESCE:
        if (parse_long(s->flag, v, 0, 60000, &n))
            return -1;
        c->push_coalesce_ms = (int)n;
        break;
    case OPT_PUSH_TIMEOUT:
        if (parse_long(s->flag, v, 1, 600, &n))
            return -1;
        c->push_timeout = (int)n;
        break;
    case OPT_PUSH_ATTEMPTS:
        if (parse_long(s->flag, v, 1, 20, &n))
            return -1;
        c->push_attempts = (int)n;
        break;
    case OPT_PUSH_THREADS:
        if (parse_long(s->flag, v, 1, 16, &n))
            return -1;
        c->push_threads = (int)n;
        break;
    case OPT_REPUSH_AFTER:
        if (parse_duration(s->flag, v, 3600, &c->repush_after))
            return -1;
        break;
    case OPT_INACTIVE_AFTER:
        if (parse_duration(s->flag, v, 86400, &c->inactive_after))
            return -1;
        break;
    case OPT_PUSH_TOPIC:
        if (strncmp(v, "com.apple.mgmt.", 15) != 0) {
            fprintf(stderr, "orchard serve: --push-topic must start with com.apple.mgmt. (got '%s')\n", v);
            return -1;
        }
        set_str(&c->push_topic, v);
        break;
    case OPT_ORG_NAME: set_str(&c->org_name, v); break;
    case OPT_WATCH_TOKEN_TTL:
        if (parse_long(s->flag, v, 1, 86400, &n))
            return -1;
        c->watch_token_ttl = n;
        break;
    case OPT_MAX_CONNECTIONS:
        if (parse_long(s->flag, v, 1, 1000000, &n))
            return -1;
        c->max_connections = (int)n;
        break;
    case OPT_ENROLL_RATE:
        if (parse_rate(s->flag, v, &c->enroll_rate))
            return -1;
        break;
    case OPT_ENROLL_BURST:
        if (parse_long(s->flag, v, 1, 100000, &n))
            return -1;
        c->enroll_burst = (int)n;
        break;
    case OPT_ENROLL_IDENTITY_RATE:
        if (parse_rate(s->flag, v, &c->enroll_identity_rate))
            return -1;
        break;
    case OPT_ENROLL_IDENTITY_BURST:
        if (parse_long(s->flag, v, 1, 100000, &n))
            return -1;
        c->enroll_identity_burst = (int)n;
        break;
    case OPT_TRUSTED_PROXY:
        if (valid_address_list(s->flag, v))
            return -1;
        set_str(&c->trusted_proxies, v);
        break;
    case OPT_ADE_AUTH: set_str(&c->ade_auth, v); break;
    case OPT_ADE_AUTH_NONCE_TTL:
        if (parse_long(s->flag, v, 1, 86400, &n))
            return -1;
        c->ade_auth_nonce_ttl = n;
        break;
    case OPT_ADE_MIN_OS: {
        char why[160];
        if (ade_min_os_check(v, why, sizeof why) != 0) {
            fprintf(stderr,
                    "orchard serve: --ade-min-os: %s (got '%s'; e.g. 17.4, or iOS:17.4:21E219,macOS:14.6)\n", why, v);
            return -1;
        }
        set_str(&c->ade_min_os, v);
        break;
    }
    case OPT_ADE_MIN_BUILD:
        if (!ade_os_build_valid(v)) {
            fprintf(stderr, "orchard serve: --ade-min-build must be a build like 21E219 (got '%s')\n", v);
            return -1;
        }
        set_str(&c->ade_min_build, v);
        break;
    case OPT_ADE_URL:
        if (strncmp(v, "https://", 8) != 0) {
            fprintf(stderr, "orchard serve: --ade-url must start with https:// (got '%s')\n", v);
            return -1;
        }
        set_str(&c->ade_url, v);
        break;
    case OPT_ADE_CA: set_str(&c->ade_ca, v); break;
    case OPT_ADE_SYNC_INTERVAL:
        if (parse_duration(s->flag, v, 60, &c->ade_sync_interval))
            return -1;
        break;
    default: break;
    }
    return 0;
}

int config_parse(config_t *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->log_level = LOG_INFO;
    c->max_body = 2 * 1024 * 1024;
    /* Workers spend much of a request waiting for the group fsync (see
     * store_sqlite.c), so more threads than cores lets commits share one
     * flush; each idle thread costs little. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long w = cpus > 0 ? 4 * cpus : 4;
    c->workers = (int)(w < 4 ? 4 : w > 64 ? 64 : w);
    c->timeout_seconds = 30;
    c->cert_days = 365;
    c->push_expiration = 86400;
    c->push_coalesce_ms = 500;
    c->push_timeout = 10;
    c->push_attempts = 5;
    c->repush_after = 24L * 3600;
    c->inactive_after = 30L * 86400;
    c->watch_token_ttl = 600;
    c->max_connections = 4096;
    /* Generous on purpose: a school or office enrolls hundreds of devices
     * through one NAT address at once (each runs MachineInfo, profile and
     * SCEP requests); the limit is there to stop floods of the signing
     * endpoints, not bursts of real devices. */
    c->enroll_rate = 50;
    c->enroll_burst = 200;
    c->enroll_identity_rate = 1.0 / 60;
    c->enroll_identity_burst = 20;
    c->ade_auth_nonce_ttl = 300;
    c->ade_sync_interval = 1800;

    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = settings[i].env ? getenv(settings[i].env) : NULL;
        if (v && *v && apply(c, &settings[i], v) != 0)
            return -1;
    }

    struct option longopts[NSETTINGS + 1];
    for (size_t i = 0; i < NSETTINGS; i++)
        longopts[i] = (struct option){settings[i].flag, settings[i].has_arg, NULL, settings[i].id};
    longopts[NSETTINGS] = (struct option){0, 0, 0, 0};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'h' || ch == OPT_HELP) {
            config_usage(stdout);
            return 1;
        }
        const struct setting *s = NULL;
        for (size_t i = 0; i < NSETTINGS; i++)
            if (settings[i].id == ch)
                s = &settings[i];
        if (!s) {
            fprintf(stderr, "orchard serve: see 'orchard serve --help'\n");
            return -1;
        }
        if (apply(c, s, s->has_arg ? optarg : NULL) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "orchard serve: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }

    if (!c->listen)
        c->listen = strdup("0.0.0.0:8443");
    if (!c->data_dir)
        c->data_dir = strdup("./var");
    if (!c->db)
        c->db = util_strdup_printf("sqlite:%s/orchard.db", c->data_dir);
    if (!c->tls_cert)
        c->tls_cert = util_strdup_printf("%s/tls.pem", c->data_dir);
    if (!c->tls_key)
        c->tls_key = util_strdup_printf("%s/tls.key", c->data_dir);
    if (!c->client_ca)
        c->client_ca = util_strdup_printf("%s/ca.pem", c->data_dir);
    if (!c->org_name)
        c->org_name = strdup("orchard");
    if (!c->public_url) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        const char *port = strrchr(c->listen, ':') + 1;
        c->public_url = util_strdup_printf("%s://%s:%s", c->insecure_http ? "http" : "https", host, port);
    }
    if (!c->listen || !c->data_dir || !c->db || !c->tls_cert || !c->tls_key || !c->client_ca || !c->public_url) {
        fprintf(stderr, "orchard serve: out of memory\n");
        return -1;
    }
    return 0;
}

void config_free(config_t *c)
{
    free(c->listen);
    free(c->data_dir);
    free(c->db);
    free(c->public_url);
    if (c->api_key) {
        memset(c->api_key, 0, strlen(c->api_key));
        free(c->api_key);
    }
    free(c->tls_cert);
    free(c->tls_key);
    free(c->client_ca);
    free(c->client_cert_header);
    if (c->scep_challenge) {
        memset(c->scep_challenge, 0, strlen(c->scep_challenge));
        free(c->scep_challenge);
    }
    if (c->enroll_secret) {
        memset(c->enroll_secret, 0, strlen(c->enroll_secret));
        free(c->enroll_secret);
    }
    free(c->machineinfo_ca);
    free(c->push_cert);
    free(c->push_topic);
    free(c->push_key);
    free(c->apns_url);
    free(c->apns_ca);
    free(c->ade_url);
    free(c->ade_ca);
    free(c->org_name);
    free(c->trusted_proxies);
    free(c->ade_auth);
    free(c->ade_min_os);
    free(c->ade_min_build);
    memset(c, 0, sizeof *c);
}
