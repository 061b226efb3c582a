/* Declarative device management: the model behind the wire protocol.
 *
 * - Declarations come from admins as JSON {Type, Identifier, Payload}
 *   (a ServerToken in the input is ignored). ddm_declaration_put validates
 *   them against Apple's schemas (ddm_schema.h), checks that every reference
 *   names an existing declaration of the right kind (no dangling or circular
 *   references), canonicalises the Payload (sorted keys, compact) and
 *   derives the ServerToken from that content.
 * - ServerToken = first 32 hex digits of SHA-256 over the canonical
 *   {"Identifier","Payload","Type"} JSON: changes exactly when the content
 *   does.
 * - DeclarationsToken of an enrollment = first 32 hex digits of SHA-256 over
 *   "kind/Identifier=ServerToken\n" lines of its effective declarations in
 *   store order: a pure function of the effective set, so it changes
 *   exactly when the set or any member changes, and every orchard instance
 *   computes the same value.
 * - Sync (ddm_sync): after any change of declarations, sets, assignments or
 *   groups, every active enrollment whose token differs from the one kept in
 *   its DDM state gets the new token and — unless one is already waiting —
 *   one DeclarativeManagement command, then a push. The command is stored
 *   without Data; the connect handler fills Data with the enrollment's
 *   current TokensResponse when it hands the command out
 *   (ddm_command_for_device), so a device never sees a stale token however
 *   many changes were coalesced into one waiting command.
 */
#ifndef ORCHARD_DDM_H
#define ORCHARD_DDM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "push.h"
#include "store.h"

#define DDM_IDENTIFIER_MAX 64 /* octets, Apple's limit for Identifier and ServerToken */
#define DDM_SYNC_UUID_PREFIX "orchard-ddm-sync-"

/* Validates, canonicalises and stores one declaration. Returns an HTTP
 * status: 201 created, 200 updated or unchanged (*changed says which), 400
 * invalid (err names the problem: unknown type, unknown key, wrong type,
 * identifier too long, dangling or circular reference ...), 503 storage. */
int ddm_declaration_put(store_t *s, const json_t *decl, int *changed, char *err, size_t errlen);

/* The declaration as devices get it: {Type, Identifier, ServerToken,
 * Payload}. NULL if the payload text cannot be parsed (never for stored
 * rows). */
json_t *ddm_declaration_json(const declaration_t *d);

/* Token of a list of effective declarations ("kind/id=token\n" lines). Writes
 * 33 bytes into out. */
void ddm_declarations_token(const char *lines, size_t len, char out[33]);

/* Effective declarations of one enrollment and their DeclarationsToken. *decls
 * is a heap array of *n declaration_t (free each, then the array). */
int ddm_effective_for(store_t *s, const char *enrollment_id, declaration_t **decls, size_t *n, char token[33]);

/* {"SyncTokens":{"DeclarationsToken":..., "Timestamp":...}} for an
 * enrollment; NULL on storage failure. Timestamp = when the token last
 * changed (now if never computed). */
json_t *ddm_tokens_response(store_t *s, const char *enrollment_id);

typedef struct {
    size_t examined;  /* active enrollments looked at */
    size_t changed;   /* whose token changed */
    size_t queued;    /* that got a new sync command (others had one waiting) */
    size_t pushed;    /* pushes handed to the pusher */
    double seconds;
} ddm_sync_report_t;

/* The fan-out described above. pusher may be NULL (no pushes). 0, or -1 on
 * storage failure (err says why; enrollments already done stay done and a
 * later ddm_sync finishes the rest). */
int ddm_sync(store_t *s, pusher_t *pusher, ddm_sync_report_t *report, char *err, size_t errlen);
/* Same for one enrollment (after TokenUpdate: a new or re-enrolled device). */
int ddm_sync_enrollment(store_t *s, pusher_t *pusher, const char *enrollment_id, char *err, size_t errlen);

/* For the connect handler: if `cmd` is an orchard DDM sync command, replaces
 * cmd->body with one carrying Data = the enrollment's current TokensResponse
 * and records the hand-out (ddm_handed_out). 0 = done or not a sync command;
 * -1 on storage failure. */
int ddm_command_for_device(store_t *s, const char *enrollment_id, command_t *cmd);

#endif
