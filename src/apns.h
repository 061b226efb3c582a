/* APNs provider API pieces that involve no I/O: the MDM push credentials
 * (certificate + key of one topic), the request (path, headers, body), and
 * the classification of APNs' answer. push.c drives the HTTP/2 transfers.
 *
 * Apple's provider API: POST /3/device/<hex token> over HTTP/2 with TLS
 * client-certificate authentication; 200 with an apns-id header when
 * accepted, otherwise a JSON body {"reason": "..."}. */
#ifndef ORCHARD_APNS_H
#define ORCHARD_APNS_H

#include <stddef.h>
#include <stdint.h>

#define APNS_URL_PRODUCTION "https://api.push.apple.com"
#define APNS_URL_DEVELOPMENT "https://api.sandbox.push.apple.com"

/* Apple allows device tokens of up to 100 bytes. */
#define APNS_TOKEN_MAX 100
/* PushMagic is a UUID in practice; anything longer is refused. */
#define APNS_MAGIC_MAX 256
/* Reasons are short CamelCase words; longer text is cut. */
#define APNS_REASON_MAX 64

/* One topic's push identity, loaded from PEM files. */
typedef struct {
    char *topic;          /* subject UID */
    char *cert_pem;       /* the certificate file as read (may hold a chain) */
    size_t cert_len;
    char *key_pem;        /* secret: wiped on free */
    size_t key_len;
    int64_t not_after;    /* Unix seconds */
    char not_after_text[32];
} apns_cred_t;

/* Reads and checks cert_path + key_path: both parse, the key matches the
 * certificate, the subject has a com.apple.mgmt. UID. An expired
 * certificate loads (so its state can be reported) — callers check
 * not_after. 0, or -1 with a reason in err (never key material). */
int apns_cred_load(const char *cert_path, const char *key_path, apns_cred_t *out, char *err, size_t errlen);
void apns_cred_clear(apns_cred_t *c);

/* "/3/device/<lower-case hex>" into out. -1 if the token is empty, too long
 * or out is too small. */
int apns_path(const unsigned char *token, size_t len, char *out, size_t outlen);

/* {"mdm":"<magic>"} with JSON escaping — the whole payload, nothing else
 * ("Structure of MDM Messages"). Length, or -1 if it does not fit. */
int apns_mdm_body(const char *magic, char *out, size_t outlen);

typedef enum {
    APNS_OK,            /* accepted */
    APNS_TOKEN_INVALID, /* 410 Unregistered, 400 BadDeviceToken: stop until a new TokenUpdate */
    APNS_RETRY,         /* 429, 5xx, network trouble: try again later */
    APNS_CERT_REJECTED, /* 403 or a TLS alert about our certificate: the topic needs a new certificate */
    APNS_FAILED         /* this push cannot succeed as sent (other 4xx, unexpected answers) */
} apns_outcome_t;

typedef struct {
    apns_outcome_t outcome;
    char reason[APNS_REASON_MAX + 1]; /* printable ASCII; "" if none */
    char error[256];                  /* human-readable summary for logs and the API */
} apns_result_t;

/* Classifies an HTTP answer: status and body (any bytes, possibly not
 * JSON). Never fails. */
void apns_classify_http(long status, const char *body, size_t len, apns_result_t *r);

/* Classifies a transfer that got no HTTP answer. `tls` says whether the
 * failure was in the TLS layer; `detail` is the transport's message (may be
 * NULL). */
void apns_classify_transport(int tls, const char *detail, apns_result_t *r);

/* Copies an apns-id header value if it looks like one (printable, no
 * spaces, bounded); "" otherwise. */
void apns_copy_id(const char *value, size_t len, char *out, size_t outlen);

#endif
