/* `orchard serve` configuration: flags, with ORCHARD_* environment variables
 * as defaults (flag > environment > built-in default). */
#ifndef ORCHARD_CONFIG_H
#define ORCHARD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "log.h"

typedef struct {
    char *listen;             /* ADDR:PORT, default 0.0.0.0:8443 */
    char *data_dir;           /* default ./var */
    char *db;                 /* default sqlite:<data_dir>/orchard.db */
    char *public_url;         /* what goes into profiles; default https://<hostname>:<port> */
    char *api_key;            /* default: generated once into <data_dir>/api.key */
    char *tls_cert, *tls_key; /* default: <data_dir>/tls.pem, tls.key (created) */
    char *client_ca;          /* device identity CA bundle; default <data_dir>/ca.pem */
    char *client_cert_header; /* proxy header carrying the client cert; NULL = ignored */
    int insecure_http;        /* plain HTTP behind a TLS-terminating proxy */
    log_level_t log_level;
    size_t max_body;          /* bytes, default 2 MiB */
    int workers;              /* worker threads, default = online CPUs */
    int timeout_seconds;      /* read/write/idle timeout per connection, default 30 */
    int noop_endpoint;        /* PUT /bench/noop: the benchmark's no-op ceiling */
    /* Enrollment */
    char *scep_challenge;     /* static SCEP challenge; NULL = one-time challenges only */
    char *enroll_secret;      /* protects GET /enroll; default generated into <data_dir>/enroll.secret */
    int admission_known;      /* 0 = open, 1 = only registered serials/UDIDs may enroll */
    int cert_days;            /* validity of issued device certificates, default 365 */
    char *machineinfo_ca;     /* trust anchors for MachineInfo signers; NULL = POST /enroll closed */
    char *push_cert;          /* APNs push certificate(s) (PEM), comma-separated; default <data_dir>/push.pem */
    char *push_key;           /* matching key(s), same order; default <data_dir>/push.key */
    char *apns_url;           /* APNs base URL; default production (or sandbox with apns_development) */
    int apns_development;     /* use Apple's development (sandbox) APNs endpoint */
    char *apns_ca;            /* CA bundle to verify the APNs server; NULL = system store */
    long push_expiration;     /* seconds a push stays deliverable (apns-expiration = now + this) */
    int push_coalesce_ms;     /* one push per device per window */
    int push_timeout;         /* seconds for one APNs request */
    int push_attempts;        /* attempts per push for retryable failures (429, 5xx, network) */
    char *push_topic;         /* overrides the topic read from the push certificate */
    int push_threads;         /* push threads (lanes), each with its own APNs connections; 0 = default */
    long repush_after;        /* seconds of silence before an active device is pushed again (0 = never) */
    long inactive_after;      /* seconds of silence before a device is flagged inactive (0 = never) */
    char *org_name;           /* PayloadOrganization of generated profiles, default "orchard" */
    long watch_token_ttl;     /* seconds a watch security token / pairing token stays valid, default 600 */
    /* Resource limits */
    int max_connections;      /* open TLS connections across all workers, default 4096 */
    double enroll_rate;       /* /enroll and /scep requests per second per client address; 0 = no limit */
    int enroll_burst;         /* bucket size of that limit, default 200 */
    double enroll_identity_rate; /* the same per enrolling identity (MachineInfo UDID, SCEP signer); 0 = off */
    int enroll_identity_burst;   /* bucket size of that limit, default 20 */
    char *trusted_proxies;    /* comma-separated addresses whose X-Forwarded-For names the client; NULL = none */
    /* ADE configuration URL (POST /enroll/ade, ade_enroll.c) */
    char *ade_auth;           /* Digest user file (user:realm:HA1); NULL = no authentication */
    long ade_auth_nonce_ttl;  /* seconds a Digest nonce stays fresh, default 300 */
    char *ade_min_os;         /* minimum OS_VERSION, e.g. "17.4"; NULL = any */
    char *ade_min_build;      /* BuildVersion named in softwareupdate.required details; NULL = none */
    /* Automated Device Enrollment (Apple's device enrollment services) */
    char *ade_url;            /* base URL, default https://mdmenrollment.apple.com */
    char *ade_ca;             /* CA bundle to verify it; NULL = system store */
    long ade_sync_interval;   /* seconds between background syncs, default 1800; 0 = on demand only */
} config_t;

/* Parses argv (after "serve"). Returns 0 to run, 1 if --help was printed,
 * -1 on a usage error (message already printed to stderr). */
int config_parse(config_t *c, int argc, char **argv);
void config_free(config_t *c);
void config_usage(FILE *out);

#endif
