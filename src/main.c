/* orchard: one binary for the server and its admin command line. */
#include <stdio.h>
#include <string.h>

#include "cli_ade.h"
#include "cli_ddm.h"
#include "cli_db.h"
#include "cli_enroll.h"
#include "cli_pushcert.h"
#include "cli_ade_setup.h"
#include "cli_watch.h"
#include "serve.h"

#ifndef ORCHARD_VERSION
#define ORCHARD_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: orchard COMMAND [options]\n\n"
                 "  serve      run the MDM server (orchard serve --help)\n"
                 "  devices    list and inspect enrolled devices\n"
                 "  enqueue    queue a raw MDM command plist for one or more devices\n"
                 "  commands   show or cancel a command\n"
                 "  push       send an APNs wake-up to devices\n"
                 "  pushcert   APNs push certificate: csr, sign (MDM vendor), import, show\n"
                 "  profile    download the enrollment profile (GET /enroll)\n"
                 "  certs      list, show or revoke issued device certificates\n"
                 "  admission  allow or deny serial numbers/UDIDs (--admission known)\n"
                 "  challenge  create a one-time SCEP challenge\n"
                 "  renew      queue renewed enrollment profiles for expiring identities\n"
                 "  declaration  DDM declarations: put, list, get, delete\n"
                 "  set        DDM declaration sets: put, list, get, delete, assign, unassign\n"
                 "  group      device groups (for set assignments): add, remove, show\n"
                 "  device-ddm a device's effective declarations, reported state and status items\n"
                 "  asset-data data served to devices for DDM asset declarations: put, get, delete\n"
                 "  watch-enrollment  enable or disable Apple Watch enrollment for iPhones or a group\n"
                 "  watches    the Apple Watches enrolled through an iPhone\n"
                 "  db         database maintenance: migrate (apply schema migrations), copy (between SQLite and PostgreSQL)\n"
                 "  ade setup-commands  commands for ADE devices awaiting configuration: put, get, clear\n"
                 "  ade        Automated Device Enrollment: server tokens, devices, profiles\n"
                 "  version    print the version\n\n"
                 "Each command has --help.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "devices") == 0 || strcmp(cmd, "enqueue") == 0 || strcmp(cmd, "commands") == 0 ||
        strcmp(cmd, "push") == 0)
        return cli_main(cmd, argc - 1, argv + 1);
    if (strcmp(cmd, "profile") == 0 || strcmp(cmd, "certs") == 0 || strcmp(cmd, "admission") == 0 ||
        strcmp(cmd, "challenge") == 0 || strcmp(cmd, "renew") == 0)
        return cli_enroll_main(cmd, argc - 1, argv + 1);
    if (strcmp(cmd, "declaration") == 0 || strcmp(cmd, "set") == 0 || strcmp(cmd, "group") == 0 ||
        strcmp(cmd, "device-ddm") == 0 || strcmp(cmd, "asset-data") == 0)
        return cli_ddm_main(cmd, argc - 1, argv + 1);
    if (strcmp(cmd, "watch-enrollment") == 0 || strcmp(cmd, "watches") == 0)
        return cli_watch_main(cmd, argc - 1, argv + 1);
    if (strcmp(cmd, "db") == 0)
        return cli_db_main(argc - 1, argv + 1);
    if (strcmp(cmd, "ade") == 0 && argc > 2 && strcmp(argv[2], "setup-commands") == 0)
        return cli_ade_setup_main(argc - 2, argv + 2);
    if (strcmp(cmd, "ade") == 0)
        return cli_ade_main(argc - 1, argv + 1);
    if (strcmp(cmd, "pushcert") == 0)
        return cli_pushcert_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("orchard %s\n", ORCHARD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "orchard: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
