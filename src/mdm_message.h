/* A parsed device message (check-in or command result) with the fields every
 * handler needs checked for type, and the enrollment it speaks for. */
#ifndef ORCHARD_MDM_MESSAGE_H
#define ORCHARD_MDM_MESSAGE_H

#include <stddef.h>

#include "plist.h"

#define MDM_ID_MAX 200

typedef struct {
    plist_t *root;
    const char *message_type; /* check-in messages */
    const char *status;       /* command results */
    const char *command_uuid;
    const char *udid;
    const char *topic;
    const char *user_id, *user_short_name, *user_long_name;
    int user_channel;
    char device_id[MDM_ID_MAX + 1]; /* UDID, or EnrollmentID for a user enrollment */
    char id[2 * MDM_ID_MAX + 2];    /* device_id, or "<device_id>:<user>" for a user channel */
} mdm_message_t;

/* Parses and checks the envelope: a plist dict whose identifying keys, when
 * present, are strings; UDID or EnrollmentID present and well-formed.
 * Returns 0, or -1 with a one-line reason. */
int mdm_message_parse(const unsigned char *body, size_t len, mdm_message_t *m, char *err, size_t errlen);
void mdm_message_free(mdm_message_t *m);

/* Key type checks for handler-specific keys. */
typedef struct {
    const char *key;
    int type; /* plist_type_t */
    int required;
} mdm_key_spec_t;

/* 0 if every spec holds, else -1 with "KEY is missing" / "KEY must be a string". */
int mdm_check_keys(const plist_t *dict, const mdm_key_spec_t *specs, size_t n, char *err, size_t errlen);

/* An identifier safe to store, log and put in admin URLs: 1..MDM_ID_MAX
 * printable ASCII characters without space, '/', ',', ':', '%' or quotes. */
int mdm_id_valid(const char *s);

#endif
