/* Parsing the envelope shared by check-in messages and command results. */
#include "mdm_message.h"

#include <stdio.h>
#include <string.h>

/* Shared iPad reports this UserID for every user; the short name identifies
 * the user channel there instead. */
#define SHARED_IPAD_USER_ID "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"

int mdm_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MDM_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("/,:%\"'\\", c))
            return 0;
    }
    return 1;
}

int mdm_check_keys(const plist_t *dict, const mdm_key_spec_t *specs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const plist_t *v = plist_dict_get(dict, specs[i].key);
        if (!v) {
            if (specs[i].required) {
                snprintf(err, errlen, "%s is missing", specs[i].key);
                return -1;
            }
            continue;
        }
        if ((int)plist_type(v) != specs[i].type) {
            snprintf(err, errlen, "%s must be a %s, not a %s", specs[i].key,
                     plist_type_name((plist_type_t)specs[i].type), plist_type_name(plist_type(v)));
            return -1;
        }
    }
    return 0;
}

int mdm_message_parse(const unsigned char *body, size_t len, mdm_message_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (len == 0) {
        snprintf(err, errlen, "empty body");
        return -1;
    }
    char perr[200];
    m->root = plist_parse((const char *)body, len, perr, sizeof perr);
    if (!m->root) {
        snprintf(err, errlen, "malformed plist: %s", perr);
        return -1;
    }
    if (plist_type(m->root) != PLIST_DICT) {
        snprintf(err, errlen, "plist root must be a dict, not a %s", plist_type_name(plist_type(m->root)));
        goto fail;
    }
    static const mdm_key_spec_t envelope[] = {
        {"MessageType", PLIST_STRING, 0}, {"Status", PLIST_STRING, 0},      {"CommandUUID", PLIST_STRING, 0},
        {"UDID", PLIST_STRING, 0},        {"EnrollmentID", PLIST_STRING, 0}, {"EnrollmentUserID", PLIST_STRING, 0},
        {"UserID", PLIST_STRING, 0},      {"UserShortName", PLIST_STRING, 0}, {"UserLongName", PLIST_STRING, 0},
        {"Topic", PLIST_STRING, 0},
    };
    if (mdm_check_keys(m->root, envelope, sizeof envelope / sizeof envelope[0], err, errlen) != 0)
        goto fail;

    m->message_type = plist_dict_get_string(m->root, "MessageType");
    m->status = plist_dict_get_string(m->root, "Status");
    m->command_uuid = plist_dict_get_string(m->root, "CommandUUID");
    m->udid = plist_dict_get_string(m->root, "UDID");
    m->topic = plist_dict_get_string(m->root, "Topic");
    m->user_id = plist_dict_get_string(m->root, "UserID");
    m->user_short_name = plist_dict_get_string(m->root, "UserShortName");
    m->user_long_name = plist_dict_get_string(m->root, "UserLongName");
    const char *enrollment_id = plist_dict_get_string(m->root, "EnrollmentID");
    const char *enrollment_user_id = plist_dict_get_string(m->root, "EnrollmentUserID");

    /* Device channel: the UDID; a user enrollment has no UDID and is known
     * by its EnrollmentID instead. */
    const char *device = m->udid ? m->udid : enrollment_id;
    if (!device) {
        snprintf(err, errlen, "UDID is missing (and no EnrollmentID)");
        goto fail;
    }
    if (!mdm_id_valid(device)) {
        snprintf(err, errlen, "UDID/EnrollmentID is not a valid identifier");
        goto fail;
    }
    snprintf(m->device_id, sizeof m->device_id, "%s", device);

    /* User channel: macOS users by UserID (or EnrollmentUserID), Shared iPad
     * users by short name. */
    const char *user = NULL;
    if (enrollment_user_id)
        user = enrollment_user_id;
    else if (m->user_id && strcmp(m->user_id, SHARED_IPAD_USER_ID) != 0)
        user = m->user_id;
    else if (m->user_short_name)
        user = m->user_short_name;
    if (user) {
        if (!mdm_id_valid(user)) {
            snprintf(err, errlen, "user identifier is not a valid identifier");
            goto fail;
        }
        m->user_channel = 1;
        snprintf(m->id, sizeof m->id, "%s:%s", m->device_id, user);
    } else {
        snprintf(m->id, sizeof m->id, "%s", m->device_id);
    }
    return 0;
fail:
    plist_free(m->root);
    m->root = NULL;
    return -1;
}

void mdm_message_free(mdm_message_t *m)
{
    plist_free(m->root);
    memset(m, 0, sizeof *m);
}
