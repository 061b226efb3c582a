/* A growable list of heap strings: what handlers collect from a store
 * listing before acting on it (a store callback runs inside the backend's
 * read and must not use the handle, so ids are copied out first). */
#ifndef ORCHARD_STRLIST_H
#define ORCHARD_STRLIST_H

#include <stddef.h>

typedef struct {
    char **v;
    size_t n, cap;
    int oom; /* an add failed: the list is incomplete */
} strlist_t;

/* Appends a copy of s. 0, or -1 (out of memory; l->oom set). */
int strlist_add(strlist_t *l, const char *s);
/* Appends a copy unless an equal string is already there (linear: short lists). */
int strlist_add_unique(strlist_t *l, const char *s);
/* A store name_cb: ctx is a strlist_t; stops the listing when out of memory. */
int strlist_collect(void *ctx, const char *name);
int strlist_collect_unique(void *ctx, const char *name);
void strlist_free(strlist_t *l);

#endif
