/* Minimum OS for ADE enrollment, per platform (see ade_min_os.h). */
#include "ade_min_os.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- versions ------------------------------------------------------------------ */

int ade_os_version_valid(const char *v)
{
    int parts = 0;
    while (*v) {
        size_t digits = strspn(v, "0123456789");
        if (digits == 0 || digits > 5 || ++parts > 4)
            return 0;
        v += digits;
        if (*v == '.') {
            v++;
            if (!*v)
                return 0;
        } else if (*v) {
            return 0;
        }
    }
    return parts > 0;
}

/* Next numeric component of a dotted version; 0 once the digits run out. */
static long next_component(const char **p)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return 0;
    long v = 0;
    while (isdigit((unsigned char)*s)) {
        if (v < 1000000)
            v = v * 10 + (*s - '0');
        s++;
    }
    if (*s == '.' && isdigit((unsigned char)s[1]))
        s++;
    *p = s;
    return v;
}

int ade_os_version_cmp(const char *a, const char *b)
{
    for (int i = 0; i < 8; i++) {
        long x = next_component(&a), y = next_component(&b);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

int ade_os_build_valid(const char *b)
{
    size_t n = strlen(b);
    return n > 0 && n <= 32 &&
           strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == n;
}

/* ---- platforms ----------------------------------------------------------------- */

static const char *const platforms[] = {"iOS", "macOS", "tvOS", "visionOS", "watchOS"};
#define NPLATFORMS (sizeof platforms / sizeof platforms[0])

static const struct {
    const char *prefix;
    const char *platform;
} products[] = {
    {"iPhone", "iOS"},   {"iPad", "iOS"},   {"iPod", "iOS"},         {"Mac", "macOS"},
    {"iMac", "macOS"},   {"AppleTV", "tvOS"}, {"RealityDevice", "visionOS"}, {"Watch", "watchOS"},
};

const char *ade_platform_of(const char *product)
{
    for (size_t i = 0; product && i < sizeof products / sizeof products[0]; i++)
        if (strncmp(product, products[i].prefix, strlen(products[i].prefix)) == 0)
            return products[i].platform;
    return NULL;
}

/* ---- the spec ------------------------------------------------------------------ */

/* One item of the spec, split in place: platform (NULL for a bare version),
 * version, build (NULL if none). 0, or -1 with the reason. */
static int split_item(char *item, const char **platform, char **version, char **build, char *err, size_t errlen)
{
    *platform = NULL;
    *build = NULL;
    char *colon = strchr(item, ':');
    if (!colon) {
        *version = item;
    } else {
        *colon = '\0';
        for (size_t i = 0; i < NPLATFORMS && !*platform; i++)
            if (strcasecmp(item, platforms[i]) == 0)
                *platform = platforms[i];
        if (!*platform) {
            snprintf(err, errlen, "unknown platform '%.32s' (iOS, macOS, tvOS, visionOS or watchOS)", item);
            return -1;
        }
        *version = colon + 1;
        char *second = strchr(*version, ':');
        if (second) {
            *second = '\0';
            *build = second + 1;
            if (!ade_os_build_valid(*build)) {
                snprintf(err, errlen, "'%.40s' is not a build like 21E219", *build);
                return -1;
            }
        }
    }
    if (!ade_os_version_valid(*version)) {
        snprintf(err, errlen, "'%.40s' is not a version like 17.4 or 14.6.1", *version);
        return -1;
    }
    return 0;
}

/* Walks the spec; with want != NULL stops at the item for that platform
 * (or remembers the bare one). Returns -1 on a bad spec. */
static int walk(const char *spec, const char *want, ade_min_os_t *named, ade_min_os_t *bare, char *err,
                size_t errlen)
{
    char copy[512];
    if (!spec || !*spec || strlen(spec) >= sizeof copy) {
        snprintf(err, errlen, "empty, or longer than %zu characters", sizeof copy - 1);
        return -1;
    }
    snprintf(copy, sizeof copy, "%s", spec);
    int seen[NPLATFORMS + 1] = {0}, items = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        const char *platform;
        char *version, *build;
        items++;
        if (split_item(item, &platform, &version, &build, err, errlen) != 0)
            return -1;
        size_t slot = NPLATFORMS;
        for (size_t i = 0; platform && i < NPLATFORMS; i++)
            if (platform == platforms[i])
                slot = i;
        if (seen[slot]++) {
            snprintf(err, errlen, platform ? "%s is named twice" : "more than one version for every platform%s",
                     platform ? platform : "");
            return -1;
        }
        ade_min_os_t *to = !platform ? bare : (want && strcmp(want, platform) == 0) ? named : NULL;
        if (to) {
            snprintf(to->platform, sizeof to->platform, "%s", platform ? platform : "");
            snprintf(to->version, sizeof to->version, "%s", version);
            snprintf(to->build, sizeof to->build, "%s", build ? build : "");
        }
    }
    if (items == 0) {
        snprintf(err, errlen, "no version in it");
        return -1;
    }
    return 0;
}

int ade_min_os_check(const char *spec, char *err, size_t errlen)
{
    ade_min_os_t named, bare;
    return walk(spec, NULL, &named, &bare, err, errlen);
}

int ade_min_os_for(const char *spec, const char *default_build, const char *product, ade_min_os_t *out)
{
    memset(out, 0, sizeof *out);
    if (!spec)
        return 0;
    const char *platform = ade_platform_of(product);
    ade_min_os_t named = {0}, bare = {0};
    char err[128];
    if (walk(spec, platform, &named, &bare, err, sizeof err) != 0)
        return 0;
    if (named.version[0]) {
        *out = named;
        return 1;
    }
    if (!bare.version[0])
        return 0;
    *out = bare;
    snprintf(out->platform, sizeof out->platform, "%s", platform ? platform : "");
    snprintf(out->build, sizeof out->build, "%s", default_build ? default_build : "");
    return 1;
}
