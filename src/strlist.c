/* Growable string lists (strlist.h). */
#include "strlist.h"

#include <stdlib.h>
#include <string.h>

int strlist_add(strlist_t *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **g = realloc(l->v, cap * sizeof *g);
        if (!g) {
            l->oom = 1;
            return -1;
        }
        l->v = g;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) {
        l->oom = 1;
        return -1;
    }
    l->n++;
    return 0;
}

int strlist_add_unique(strlist_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return 0;
    return strlist_add(l, s);
}

int strlist_collect(void *ctx, const char *name)
{
    return strlist_add(ctx, name) != 0;
}

int strlist_collect_unique(void *ctx, const char *name)
{
    return strlist_add_unique(ctx, name) != 0;
}

void strlist_free(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}
