/* The OS a device must run to enroll through ADE (--ade-min-os): one
 * minimum for every platform, or one per platform, since the platforms
 * number their versions apart (an iPhone on 17.4 and a Mac on 14.6 are
 * both current; one "17.4" for both would turn every Mac away).
 *
 * The spec is a comma-separated list of items:
 *   VERSION                      for every platform not named (at most one;
 *                                its build comes from --ade-min-build)
 *   PLATFORM:VERSION[:BUILD]     PLATFORM = iOS (iPhone, iPad, iPod touch),
 *                                macOS, tvOS, visionOS or watchOS, any case
 * e.g. "iOS:17.4:21E219,macOS:14.6". A platform neither named nor covered
 * by a bare VERSION has no minimum. The platform comes from MachineInfo's
 * PRODUCT (iPhone16,1 -> iOS, Mac14,2 / MacBookPro18,1 / iMac21,1 -> macOS,
 * AppleTV14,1 -> tvOS, RealityDevice14,1 -> visionOS).
 */
#ifndef ORCHARD_ADE_MIN_OS_H
#define ORCHARD_ADE_MIN_OS_H

#include <stddef.h>

/* An OS version as --ade-min-os takes it: 1 to 4 dot-separated decimal
 * components, each at most 5 digits ("17", "17.4", "14.6.1"). */
int ade_os_version_valid(const char *v);

/* Numeric comparison of dotted versions, missing components counting as 0
 * (17.4 < 17.10, 17 == 17.0). Anything after the leading digits and dots
 * (" (a)") is ignored. <0, 0, >0. */
int ade_os_version_cmp(const char *a, const char *b);

/* A build as Apple writes it (21E219): 1 to 32 letters and digits. */
int ade_os_build_valid(const char *b);

/* 0 if `spec` is a valid --ade-min-os, else -1 with the reason. */
int ade_min_os_check(const char *spec, char *err, size_t errlen);

/* The minimum for a device. */
typedef struct {
    char platform[16]; /* "iOS", ...; "" when the product names none */
    char version[32];
    char build[33];    /* "" when none was given */
} ade_min_os_t;

/* The platform of a MachineInfo PRODUCT ("iPhone16,1" -> "iOS"); NULL if
 * orchard does not know it. */
const char *ade_platform_of(const char *product);

/* Fills *out with the minimum that applies to `product` under `spec` (the
 * bare version's build is `default_build`, may be NULL). 1 when one
 * applies, 0 when none does (spec NULL, or the platform neither named nor
 * covered). spec must have passed ade_min_os_check. */
int ade_min_os_for(const char *spec, const char *default_build, const char *product, ade_min_os_t *out);

#endif
