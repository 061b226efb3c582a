/* Apple Watch pairing tokens: what orchard answers to an iPhone's GetToken
 * (TokenServiceType com.apple.watch.pairing) and checks when the watch
 * retries its MachineInfo with PAIRING_TOKEN.
 *
 * Apple leaves the format to the server ("implementation-defined"; the phone
 * and watch servers must agree) but asks that it confirm the watch-phone
 * pairing and that the phone is enrolled with the same organization, and
 * that it resist tampering, spoofing and replay. orchard's format, version 1:
 *
 *     OWP1.<claims>.<mac>
 *
 *   claims  base64url (RFC 4648 §5, no padding) of compact JSON with sorted
 *           keys: {"exp":E,"iat":I,"org":O,"phone":P,"st":S,"v":1,"watch":W}
 *           E, I   expiry and issue time, Unix seconds (integers)
 *           O      organization id: lower-case hex SHA-256 of the DER of
 *                  orchard's device CA certificate (DATA_DIR/ca.pem)
 *           P, W   PhoneUDID and WatchUDID from the GetToken request
 *           S      the SecurityToken orchard gave the watch in its 403
 *   mac     base64url of HMAC-SHA256(pairing key, "OWP1." + claims), i.e.
 *           over the exact ASCII bytes before the second dot.
 *
 * The pairing key is 32 random bytes in DATA_DIR/pairing.key (mode 0600),
 * created at the first start; instances sharing the data directory share it.
 * TokenData carries the token's ASCII bytes. Integrity and origin come from
 * the MAC; replay is stopped by the single-use security token the claims
 * name (stored, bound to the watch and then to the phone, spent once).
 *
 * Nothing here logs; reasons never contain the key or the MAC.
 */
#ifndef ORCHARD_PAIRING_H
#define ORCHARD_PAIRING_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#define PAIRING_KEY_LEN 32
#define PAIRING_KEY_FILE "pairing.key"
#define PAIRING_TOKEN_PREFIX "OWP1."
#define PAIRING_TOKEN_MAX 4096 /* a real token is ~400 bytes; anything longer is refused unread */
#define PAIRING_SERVICE_TYPE "com.apple.watch.pairing"
#define PAIRING_DEFAULT_TTL 600 /* seconds: security token and pairing token lifetime */

typedef struct {
    char *security_token;
    char *phone_udid;
    char *watch_udid;
    char *org;      /* hex SHA-256 of the device CA certificate */
    int64_t iat, exp;
} pairing_claims_t;

typedef enum {
    PAIRING_OK = 0,
    PAIRING_MALFORMED,  /* not an OWP1 token, bad encoding or claims */
    PAIRING_BAD_MAC,    /* not made with this pairing key, or altered */
    PAIRING_OTHER_ORG,  /* made for another organization's CA */
    PAIRING_EXPIRED,    /* exp <= now */
} pairing_result_t;

/* Reads DATA_DIR/pairing.key, or creates it (32 random bytes, mode 0600).
 * Creation is race-free between instances starting together: the file is
 * written under a temporary name and linked into place only if no other
 * instance got there first, in which case that instance's key is read.
 * 0, or -1 with a reason (a file of the wrong size is refused, not
 * replaced: tokens other instances issued would stop verifying). */
int pairing_key_load(const char *data_dir, unsigned char key[PAIRING_KEY_LEN], char *err, size_t errlen);

/* The organization id: lower-case hex SHA-256 of the certificate's DER. */
int pairing_org_id(X509 *ca_cert, char out[65]);

/* Builds a token for the claims (all strings required). Heap
 * NUL-terminated ASCII, *len = its length; NULL on allocation failure. */
char *pairing_token_mint(const unsigned char key[PAIRING_KEY_LEN], const pairing_claims_t *c, size_t *len);

/* Checks a token: format, MAC (constant-time), organization, expiry. On
 * PAIRING_OK *out holds the claims (free with pairing_claims_free); on
 * failure *out is zeroed and err says why in words fit for a log line. */
pairing_result_t pairing_token_verify(const unsigned char key[PAIRING_KEY_LEN], const void *token, size_t len,
                                      const char *org, int64_t now, pairing_claims_t *out, char *err,
                                      size_t errlen);
void pairing_claims_free(pairing_claims_t *c);

#endif
