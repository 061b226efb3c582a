/* Apple Watch pairing tokens: key file, mint, verify (see pairing.h). */
#include "pairing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "pki.h"
#include "keyfile.h"
#include "util.h"

/* ---- key file ------------------------------------------------------------------ */

int pairing_key_load(const char *data_dir, unsigned char key[PAIRING_KEY_LEN], char *err, size_t errlen)
{
    return keyfile_load_or_create(data_dir, PAIRING_KEY_FILE, "pairing key", key, PAIRING_KEY_LEN, err, errlen);
}

int pairing_org_id(X509 *ca_cert, char out[65])
{
    return ca_cert ? pki_cert_sha256_hex(ca_cert, out) : -1;
}

/* ---- base64url ------------------------------------------------------------------- */

static char *b64url_encode(const unsigned char *in, size_t len)
{
    char *s = util_base64_encode(in, len);
    if (!s)
        return NULL;
    size_t n = strcspn(s, "=");
    s[n] = '\0';
    for (char *c = s; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    return s;
}

/* Strict: only the URL alphabet, no padding. Heap, NUL-terminated. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4 == 1)
        return NULL;
    char *tmp = malloc(len + 3);
    if (!tmp)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) {
            free(tmp);
            return NULL;
        }
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t n = len;
    while (n % 4)
        tmp[n++] = '=';
    unsigned char *out = util_base64_decode(tmp, n, outlen);
    free(tmp);
    return out;
}

/* ---- mint and verify ---------------------------------------------------------------- */

static int mac_of(const unsigned char key[PAIRING_KEY_LEN], const char *data, size_t len, unsigned char mac[32])
{
    unsigned int mlen = 0;
    return HMAC(EVP_sha256(), key, PAIRING_KEY_LEN, (const unsigned char *)data, len, mac, &mlen) && mlen == 32 ? 0
                                                                                                              : -1;
}

char *pairing_token_mint(const unsigned char key[PAIRING_KEY_LEN], const pairing_claims_t *c, size_t *len)
{
    *len = 0;
    if (!c->security_token || !c->phone_udid || !c->watch_udid || !c->org)
        return NULL;
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:s,s:i,s:s}", "exp", (json_int_t)c->exp, "iat", (json_int_t)c->iat,
                          "org", c->org, "phone", c->phone_udid, "st", c->security_token, "v", 1, "watch",
                          c->watch_udid);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    char *claims = text ? b64url_encode((const unsigned char *)text, strlen(text)) : NULL;
    free(text);
    char *signed_part = claims ? util_strdup_printf("%s%s", PAIRING_TOKEN_PREFIX, claims) : NULL;
    free(claims);
    unsigned char mac[32];
    char *mac_text = NULL;
    if (signed_part && mac_of(key, signed_part, strlen(signed_part), mac) == 0)
        mac_text = b64url_encode(mac, sizeof mac);
    OPENSSL_cleanse(mac, sizeof mac);
    char *token = mac_text ? util_strdup_printf("%s.%s", signed_part, mac_text) : NULL;
    free(signed_part);
    free(mac_text);
    if (token)
        *len = strlen(token);
    return token;
}

void pairing_claims_free(pairing_claims_t *c)
{
    if (!c)
        return;
    free(c->security_token);
    free(c->phone_udid);
    free(c->watch_udid);
    free(c->org);
    memset(c, 0, sizeof *c);
}

static char *claim_string(const json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s && *s && strlen(s) <= 256 ? strdup(s) : NULL;
}

pairing_result_t pairing_token_verify(const unsigned char key[PAIRING_KEY_LEN], const void *token, size_t len,
                                      const char *org, int64_t now, pairing_claims_t *out, char *err,
                                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *t = token;
    size_t plen = strlen(PAIRING_TOKEN_PREFIX);
    if (!t || len <= plen || len > PAIRING_TOKEN_MAX || memcmp(t, PAIRING_TOKEN_PREFIX, plen) != 0) {
        util_set_err(err, errlen, "pairing token is not an orchard OWP1 token");
        return PAIRING_MALFORMED;
    }
    const char *dot = memchr(t + plen, '.', len - plen);
    if (!dot || memchr(t, '\0', len)) {
        util_set_err(err, errlen, "pairing token is malformed (no MAC part)");
        return PAIRING_MALFORMED;
    }
    size_t signed_len = (size_t)(dot - t);
    size_t mac_len = 0;
    unsigned char *given = b64url_decode(dot + 1, len - signed_len - 1, &mac_len);
    if (!given || mac_len != 32) {
        free(given);
        util_set_err(err, errlen, "pairing token is malformed (bad MAC encoding)");
        return PAIRING_MALFORMED;
    }
    /* The MAC is checked before the claims are even decoded: nothing the
     * sender chose is interpreted unless this key made it. */
    unsigned char mac[32];
    int mac_ok = mac_of(key, t, signed_len, mac) == 0 && CRYPTO_memcmp(mac, given, 32) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    free(given);
    if (!mac_ok) {
        util_set_err(err, errlen, "pairing token MAC does not verify (forged, altered, or made with another "
                                  "pairing key)");
        return PAIRING_BAD_MAC;
    }
    size_t clen = 0;
    unsigned char *claims = b64url_decode(t + plen, signed_len - plen, &clen);
    json_t *j = claims ? json_loadb((const char *)claims, clen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(claims);
    json_t *v = json_object_get(j, "v");
    json_t *iat = json_object_get(j, "iat"), *exp = json_object_get(j, "exp");
    if (!json_is_object(j) || !json_is_integer(v) || json_integer_value(v) != 1 || !json_is_integer(iat) ||
        !json_is_integer(exp)) {
        json_decref(j);
        util_set_err(err, errlen, "pairing token claims are malformed");
        return PAIRING_MALFORMED;
    }
    out->security_token = claim_string(j, "st");
    out->phone_udid = claim_string(j, "phone");
    out->watch_udid = claim_string(j, "watch");
    out->org = claim_string(j, "org");
    out->iat = (int64_t)json_integer_value(iat);
    out->exp = (int64_t)json_integer_value(exp);
    json_decref(j);
    if (!out->security_token || !out->phone_udid || !out->watch_udid || !out->org) {
        pairing_claims_free(out);
        util_set_err(err, errlen, "pairing token claims are malformed");
        return PAIRING_MALFORMED;
    }
    if (!org || strcmp(out->org, org) != 0) {
        pairing_claims_free(out);
        util_set_err(err, errlen, "pairing token was issued for another organization (device CA)");
        return PAIRING_OTHER_ORG;
    }
    if (out->exp <= now) {
        util_set_err(err, errlen, "pairing token expired %lld s ago", (long long)(now - out->exp));
        pairing_claims_free(out);
        return PAIRING_EXPIRED;
    }
    return PAIRING_OK;
}
