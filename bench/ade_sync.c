/* ADE device sync at scale: N devices (default 100,000) assigned to an MDM
 * server at the DEP simulator (tests/support/depsim.c, HTTPS on loopback),
 * then through the real client, sync engine and SQLite store:
 *   1. the first run: a full fetch in pages of 1,000 (cursor, limit,
 *      more_to_follow), every page validated and applied in one transaction;
 *   2. a sync after 1% of the devices changed (modified, deleted, added);
 *   3. a sync with nothing new (the floor: session + one empty page).
 * Reports devices per second. Usage: ade_sync [N]  (BENCH_DIR, default /tmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ade_sync.h"
#include "ade_token.h"
#include "depsim.h"
#include "log.h"
#include "store.h"
#include "util.h"

static double run(ade_env_t *env, store_t *s, const char *label, ade_sync_report_t *rep)
{
    int64_t t0 = util_now_us();
    ade_sync_token(env, s, "bench", rep);
    double secs = (double)(util_now_us() - t0) / 1e6;
    if (rep->outcome != ADE_SYNC_DONE) {
        fprintf(stderr, "%s failed: %s\n", label, rep->error.message);
        exit(1);
    }
    printf("%-28s %8zu records %4d pages %8.2f s %10.0f devices/s\n", label, rep->records, rep->pages, secs,
           secs > 0 ? (double)rep->records / secs : 0.0);
    return secs;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    if (n < 100)
        n = 100;
    log_set_level(LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char *dir = util_strdup_printf("%s/orchard-bench-ade-XXXXXX", base);
    if (!dir || !mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    depsim_t *sim = depsim_start(dir);
    char *err = NULL;
    if (!sim || ade_keypair_create(dir, 0, &err) < 0) {
        fprintf(stderr, "setup failed: %s\n", err ? err : "depsim");
        return 1;
    }
    depsim_add_devices(sim, "BENCH", n);
    char *cert = util_strdup_printf("%s/%s", dir, ADE_CERT_FILE);
    size_t len = 0;
    unsigned char *file = depsim_token_file(cert, NULL, util_now() + 365 * 86400, &len);
    ade_creds_t creds;
    if (!file || ade_token_decrypt(dir, file, len, &creds, &err) != 0) {
        fprintf(stderr, "token: %s\n", err ? err : "?");
        return 1;
    }
    char *url = util_strdup_printf("sqlite:%s/orchard.db", dir);
    store_t *s = store_open(url, &err);
    ade_env_t env;
    char why[256];
    if (!s || ade_env_init(&env, dir, url, "https://127.0.0.1", why, sizeof why) != 0 ||
        ade_token_store(&env, s, "bench", &creds, util_now()) != STORE_OK) {
        fprintf(stderr, "store: %s\n", err ? err : why);
        return 1;
    }
    env.client.base_url = depsim_url(sim);
    env.client.ca_file = depsim_ca_path(sim);
    env.page_limit = 1000;

    printf("ADE sync of %d devices from the DEP simulator (HTTPS, pages of 1,000) into SQLite\n", n);
    ade_sync_report_t rep;
    run(&env, s, "full fetch", &rep);
    if (rep.added != (size_t)n) {
        fprintf(stderr, "expected %d new devices, got %zu\n", n, rep.added);
        return 1;
    }
    int changes = n / 100;
    for (int i = 1; i <= changes; i++) {
        char serial[32];
        snprintf(serial, sizeof serial, "BENCH%06d", i * 50 % n + 1);
        if (i % 3 == 0)
            depsim_delete_device(sim, serial);
        else
            depsim_modify_device(sim, serial, "gold");
    }
    depsim_add_devices(sim, "LATE", changes / 3);
    run(&env, s, "sync after 1% changed", &rep);
    run(&env, s, "sync, nothing new", &rep);

    store_close(s);
    ade_env_clear(&env);
    ade_creds_free(&creds);
    free(file);
    free(cert);
    free(url);
    depsim_stop(sim);
    char *cmd = util_strdup_printf("rm -rf %s", dir);
    if (cmd && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(cmd);
    free(dir);
    curl_global_cleanup();
    return 0;
}
