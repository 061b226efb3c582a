/* ADE server tokens: the key pair whose certificate the admin uploads to
 * Apple Business Manager for an MDM server, and the token file Apple gives
 * back (an S/MIME message: PKCS#7 enveloped data, encrypted to that
 * certificate, whose content carries a JSON object between
 * "-----BEGIN MESSAGE-----" and "-----END MESSAGE-----" lines with the OAuth
 * credentials consumer_key, consumer_secret, access_token, access_secret and
 * access_token_expiry). */
#ifndef ORCHARD_ADE_TOKEN_H
#define ORCHARD_ADE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define ADE_CERT_FILE "ade-cert.pem" /* upload this to Apple */
#define ADE_CERT_KEY_FILE "ade-cert.key"
#define ADE_TOKEN_MAX (256 * 1024)   /* a token file is ~2-4 KiB */

typedef struct {
    char *consumer_key, *consumer_secret, *access_token, *access_secret;
    int64_t access_token_expiry; /* 0 when the file has none */
} ade_creds_t;

/* Wipes and frees the strings. */
void ade_creds_free(ade_creds_t *c);

/* Creates DATA_DIR/ade-cert.key (RSA-2048, 0600) and ade-cert.pem (self-
 * signed, 5 years). Existing files are kept unless force. 0 created, 1
 * already there (kept), -1 with *err (heap). */
int ade_keypair_create(const char *data_dir, int force, char **err);

/* Decrypts a token file with DATA_DIR's key pair and parses the
 * credentials. 0, or -1 with *err (heap) naming the problem: not S/MIME,
 * not encrypted to this certificate, no message markers, bad JSON, missing
 * keys. */
int ade_token_decrypt(const char *data_dir, const void *file, size_t len, ade_creds_t *out, char **err);

/* The credentials as compact JSON (what gets sealed), and back. */
char *ade_creds_to_json(const ade_creds_t *c);
int ade_creds_from_json(const char *json, size_t len, ade_creds_t *out, char *err, size_t errlen);

#endif
