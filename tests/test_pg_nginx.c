/* Two orchard instances on one PostgreSQL database behind nginx, as
 * docs/scaling.md describes: nginx terminates TLS, asks devices for their
 * certificate (ssl_verify_client optional_no_ca: orchard, not nginx,
 * verifies it) and passes it in a header ($ssl_client_escaped_cert);
 * the instances run --insecure-http --client-cert-header and share the
 * device CA. nginx spreads requests round-robin, so one device's
 * consecutive requests land on different instances.
 *
 * A population of DEVICES simulated devices with real certificates
 * enrolls through nginx; commands are enqueued through either instance's
 * admin API; the devices poll through nginx and acknowledge every command.
 * What must hold: no command is handed out twice, none is lost, every
 * result is recorded once (status Acknowledged with the result, one
 * command_result event each), and both instances served device traffic
 * (nginx's log names the upstream of each request).
 *
 * Needs ORCHARD_TEST_DB=postgres://... (tests/run.sh's PostgreSQL pass)
 * and nginx (make test-deps); skips itself otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "devsim.h"
#include "plist.h"
#include "store.h"
#include "testserver.h"
#include "util.h"

#define DEVICES 32
#define CMDS 5     /* per device */
#define THREADS 8  /* each drives DEVICES / THREADS devices */
#define HEADER "X-Client-Cert"

typedef struct {
    devsim_t *d;
    char udid[64];
    char uuid[CMDS][64];
    int delivered[CMDS];
    int acked[CMDS];
    int foreign;  /* handed a command that is not this device's */
    int errors;   /* unexpected statuses */
    int done;
} device_t;

static device_t devices[DEVICES];

static int index_of(const device_t *dv, const char *uuid)
{
    for (int i = 0; uuid && i < CMDS; i++)
        if (strcmp(dv->uuid[i], uuid) == 0)
            return i;
    return -1;
}

/* One device until its queue is empty and everything is acknowledged. */
static void drive(device_t *dv)
{
    devsim_reply_t r;
    int64_t deadline = util_now_us() + 120 * 1000000LL;
    if (devsim_idle(dv->d, &r) != 0) {
        dv->errors++;
        return;
    }
    while (util_now_us() < deadline) {
        if (r.status != 200) {
            dv->errors++;
            devsim_reply_free(&r);
            return;
        }
        const char *uuid = devsim_command_uuid(&r);
        if (!uuid) {
            devsim_reply_free(&r);
            int all = 1;
            for (int i = 0; i < CMDS; i++)
                all &= dv->acked[i] == 1;
            dv->done = all;
            return;
        }
        int i = index_of(dv, uuid);
        if (i < 0) {
            dv->foreign++;
            devsim_reply_free(&r);
            return;
        }
        dv->delivered[i]++;
        char done_uuid[64];
        snprintf(done_uuid, sizeof done_uuid, "%s", uuid);
        devsim_reply_free(&r);
        if (devsim_report(dv->d, done_uuid, "Acknowledged", NULL, &r) != 0) {
            dv->errors++;
            return;
        }
        if (r.status == 200)
            dv->acked[i]++;
    }
    dv->errors++;
}

static void *thread_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int k = t; k < DEVICES; k += THREADS)
        drive(&devices[k]);
    return NULL;
}

/* ---- nginx ----------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char conf[128], cert[128], key[128], access_log[128], error_log[128];
    int port;
    pid_t pid;
} nginx_t;

static const char *nginx_binary(void)
{
    static const char *const candidates[] = {"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return NULL;
}

/* A port the kernel picks for a throwaway listener is free right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int nginx_start(nginx_t *n, int upstream1, int upstream2)
{
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/orchard-nginx-XXXXXX");
    if (!mkdtemp(n->dir))
        return -1;
    snprintf(n->conf, sizeof n->conf, "%s/nginx.conf", n->dir);
    snprintf(n->cert, sizeof n->cert, "%s/tls.pem", n->dir);
    snprintf(n->key, sizeof n->key, "%s/tls.key", n->dir);
    snprintf(n->access_log, sizeof n->access_log, "%s/access.log", n->dir);
    snprintf(n->error_log, sizeof n->error_log, "%s/error.log", n->dir);
    char cmd[768];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s "
             "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             n->key, n->cert);
    if (system(cmd) != 0)
        return -1;
    n->port = free_port();
    /* The configuration docs/scaling.md shows, with test paths. */
    char *conf = util_strdup_printf(
        "%s"
        "worker_processes 1;\n"
        "daemon off;\n"
        "pid %s/nginx.pid;\n"
        "error_log %s info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "  log_format up '$remote_addr $request_method $uri $status upstream=$upstream_addr';\n"
        "  access_log %s up;\n"
        "  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;\n"
        "  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
        "  upstream orchard {\n"
        "    server 127.0.0.1:%d max_fails=0;\n"
        "    server 127.0.0.1:%d max_fails=0;\n"
        "    keepalive 32;\n"
        "  }\n"
        "  server {\n"
        "    listen 127.0.0.1:%d ssl;\n"
        "    ssl_certificate %s;\n"
        "    ssl_certificate_key %s;\n"
        "    ssl_verify_client optional_no_ca;\n"
        "    client_max_body_size 4m;\n"
        "    location / {\n"
        "      proxy_pass http://orchard;\n"
        "      proxy_http_version 1.1;\n"
        "      proxy_set_header Connection \"\";\n"
        "      proxy_set_header Host $host;\n"
        "      proxy_set_header " HEADER " $ssl_client_escaped_cert;\n"
        "      proxy_set_header X-Forwarded-For $remote_addr;\n"
        "    }\n"
        "  }\n"
        "}\n",
        geteuid() == 0 ? "user root;\n" : "", n->dir, n->error_log, n->access_log, n->dir, n->dir, n->dir, n->dir,
        n->dir, upstream1, upstream2, n->port, n->cert, n->key);
    int rc = write_file(n->conf, conf);
    free(conf);
    if (rc != 0)
        return -1;
    const char *bin = nginx_binary();
    fflush(NULL);
    n->pid = fork();
    if (n->pid < 0)
        return -1;
    if (n->pid == 0) {
        execl(bin, bin, "-p", n->dir, "-c", n->conf, "-e", n->error_log, (char *)NULL);
        _exit(127);
    }
    /* Up when it accepts a TLS connection. */
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/healthz", n->port);
    for (int i = 0; i < 100; i++) {
        CURL *c = curl_easy_init();
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CAINFO, n->cert);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
        CURLcode cc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (cc == CURLE_OK && status > 0)
            return 0;
        int st;
        if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
            n->pid = 0;
            fprintf(stderr, "nginx exited; see %s\n", n->error_log);
            return -1;
        }
        usleep(100 * 1000);
    }
    return -1;
}

static void nginx_stop(nginx_t *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGQUIT); /* graceful */
        int st;
        waitpid(n->pid, &st, 0);
        n->pid = 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", n->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", n->dir);
}

/* Requests nginx passed to upstream `port` for `path_prefix`. */
static int upstream_count(const nginx_t *n, int port, const char *path_prefix)
{
    FILE *f = fopen(n->access_log, "r");
    if (!f)
        return 0;
    char line[512], want[64];
    snprintf(want, sizeof want, "upstream=127.0.0.1:%d", port);
    int count = 0;
    while (fgets(line, sizeof line, f))
        count += strstr(line, want) != NULL && strstr(line, path_prefix) != NULL;
    fclose(f);
    return count;
}

/* ---- the test ------------------------------------------------------------- */

typedef struct {
    int acked, events;
} tally_t;

static int tally_target(void *ctx, const command_target_t *t)
{
    tally_t *c = ctx;
    c->acked += strcmp(t->status, CMD_STATUS_ACKNOWLEDGED) == 0 && t->result != NULL;
    return 0;
}

static int tally_event(void *ctx, const store_event_t *ev)
{
    tally_t *c = ctx;
    c->events += strcmp(ev->kind, "command_result") == 0;
    return 0;
}

static void test_two_instances_behind_nginx(void **state)
{
    (void)state;
    const char *db = getenv("ORCHARD_TEST_DB");
    if (!db || strncmp(db, "postgres", 8) != 0 || !nginx_binary())
        skip();

    testserver_t a, b;
    const char *args_a[] = {"--db", db, "--insecure-http", "--client-cert-header", HEADER, NULL};
    assert_int_equal(testserver_start(&a, args_a), 0);
    /* The second instance verifies device certificates with the first's CA. */
    const char *args_b[] = {"--db", db, "--insecure-http", "--client-cert-header", HEADER, "--client-ca", a.ca_path,
                            NULL};
    assert_int_equal(testserver_start(&b, args_b), 0);
    nginx_t ng;
    assert_int_equal(nginx_start(&ng, a.port, b.port), 0);
    char front[64];
    snprintf(front, sizeof front, "https://127.0.0.1:%d", ng.port);

    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    for (int k = 0; k < DEVICES; k++) {
        device_t *dv = &devices[k];
        snprintf(dv->udid, sizeof dv->udid, "NGX-%s-%02d", hex, k);
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        assert_int_equal(testserver_device_identity(&a, dv->udid, &key, &cert), 0);
        dv->d = devsim_new(front, ng.cert, dv->udid, key, cert, DEVSIM_AUTH_MTLS);
        EVP_PKEY_free(key);
        X509_free(cert);
        assert_non_null(dv->d);
        assert_int_equal(devsim_authenticate(dv->d), 200);
        assert_int_equal(devsim_token_update(dv->d), 200);
    }
    /* Commands through either instance's admin API. */
    for (int i = 0; i < CMDS; i++)
        for (int k = 0; k < DEVICES; k++) {
            device_t *dv = &devices[k];
            snprintf(dv->uuid[i], sizeof dv->uuid[i], "NGX-%s-%02d-%d", hex, k, i);
            size_t len;
            char *xml = testserver_command_xml(dv->uuid[i], "DeviceInformation", NULL, &len);
            char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", dv->udid);
            assert_int_equal(testserver_api((k + i) % 2 ? &b : &a, "", "PUT", path, xml, len, NULL), 200);
            free(path);
            free(xml);
        }

    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    for (int k = 0; k < DEVICES; k++) {
        device_t *dv = &devices[k];
        assert_int_equal(dv->errors, 0);
        assert_int_equal(dv->foreign, 0);
        for (int i = 0; i < CMDS; i++) {
            assert_int_equal(dv->delivered[i], 1); /* never twice, never lost */
            assert_int_equal(dv->acked[i], 1);
        }
        assert_true(dv->done);
    }
    int via_a = upstream_count(&ng, a.port, "/mdm/"), via_b = upstream_count(&ng, b.port, "/mdm/");
    fprintf(stderr, "nginx: %d device requests to instance A, %d to instance B\n", via_a, via_b);
    assert_true(via_a > DEVICES && via_b > DEVICES);

    nginx_stop(&ng);
    assert_int_equal(testserver_stop(&b), 0);
    assert_int_equal(testserver_stop(&a), 0);

    store_t *s = store_open(db, NULL);
    assert_non_null(s);
    for (int k = 0; k < DEVICES; k++) {
        tally_t ev = {0, 0};
        assert_int_equal(s->ops->event_list(s, devices[k].udid, 1000, tally_event, &ev), STORE_OK);
        assert_int_equal(ev.events, CMDS);
        for (int i = 0; i < CMDS; i++) {
            tally_t t = {0, 0};
            assert_int_equal(s->ops->command_targets(s, devices[k].uuid[i], tally_target, &t), STORE_OK);
            assert_int_equal(t.acked, 1);
        }
        devsim_free(devices[k].d);
    }
    store_close(s);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_instances_behind_nginx),
    };
    return cmocka_run_group_tests_name("pg_nginx", tests, setup, teardown);
}
