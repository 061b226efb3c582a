/* Integration-test server runner (see testserver.h). */
#include "testserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "curl_buffer.h"
#include "testpki.h"
#include "util.h"

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Opt-in wrapper for the server command line, e.g.
 * ORCHARD_SERVER_WRAPPER="valgrind --error-exitcode=99": its words (split on
 * blanks, no quoting) go before the server binary. */
static const char *server_wrapper(void)
{
    const char *w = getenv("ORCHARD_SERVER_WRAPPER");
    return w && *w ? w : NULL;
}

/* Deciseconds to wait for startup and for a clean exit. A wrapped server
 * (valgrind) runs tens of times slower than a native one. */
static int wait_ticks(void)
{
    return server_wrapper() ? 3000 : 300;
}

long testserver_api(const testserver_t *s, const char *key, const char *method, const char *path, const char *body,
                    size_t len, json_t **out)
{
    if (out)
        *out = NULL;
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct curl_slist *h = NULL;
    char *auth = NULL;
    if (key) {
        auth = util_strdup_printf("Authorization: Bearer %s", *key ? key : TESTSERVER_API_KEY);
        h = curl_slist_append(h, auth);
    }
    char *url = util_strdup_printf("%s%s", s->base_url, path);
    curl_buffer_t sk = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (out && sk.data)
        *out = json_loads(sk.data, 0, NULL);
    free(sk.data);
    free(url);
    free(auth);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static int healthy(const testserver_t *s)
{
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s/healthz", s->base_url);
    curl_buffer_t sk = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, server_wrapper() ? 20L : 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    free(sk.data);
    free(url);
    curl_easy_cleanup(c);
    return status == 200;
}

/* Forks and execs the server on s->dir / s->port and waits until /healthz
 * answers. append: add to the existing log (a restart) instead of starting
 * a new one. */
static int spawn(testserver_t *s, const char *const *extra_args, int append)
{
    const char *bin = getenv("ORCHARD_BIN");
    if (!bin) {
        fprintf(stderr, "testserver: ORCHARD_BIN is not set\n");
        return -1;
    }
    char listen[64], datadir[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(datadir, sizeof datadir, "%s", s->dir);

    enum { MAX_WRAP = 24, MAX_ARGS = MAX_WRAP + 40 };
    const char *argv[MAX_ARGS];
    int n = 0;
    char *wrap = server_wrapper() ? strdup(server_wrapper()) : NULL;
    if (wrap) {
        char *save = NULL;
        for (char *w = strtok_r(wrap, " \t", &save); w && n < MAX_WRAP; w = strtok_r(NULL, " \t", &save))
            argv[n++] = w;
    }
    argv[n++] = bin;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--data-dir";
    argv[n++] = datadir;
    argv[n++] = "--api-key";
    argv[n++] = TESTSERVER_API_KEY;
    argv[n++] = "--public-url";
    argv[n++] = "https://127.0.0.1";
    argv[n++] = "--workers";
    argv[n++] = "2";
    for (int i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 2; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid < 0) {
        free(wrap);
        return -1;
    }
    if (pid == 0) {
        int fd = open(s->log_path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
        if (fd >= 0) {
            if (append) {
                static const char mark[] = "---- testserver: restart on the same data directory ----\n";
                if (write(fd, mark, sizeof mark - 1) < 0) {
                    /* the marker is only a reading aid */
                }
            }
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* execvp: a wrapper is looked up in PATH; the server binary is a path. */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    free(wrap);
    s->pid = pid;
    int ticks = wait_ticks(); /* 30 s: ASan builds start slowly; 300 s under a wrapper */
    for (int i = 0; i < ticks; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "testserver: server exited during startup; log %s\n", s->log_path);
            s->pid = 0;
            return -1;
        }
        if (access(s->ca_path, R_OK) == 0 && healthy(s))
            return 0;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "testserver: server did not become healthy\n");
    return -1;
}

int testserver_start(testserver_t *s, const char *const *extra_args)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/orchard-test-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    s->port = free_port();
    for (int i = 0; extra_args && extra_args[i]; i++)
        if (strcmp(extra_args[i], "--insecure-http") == 0)
            s->plain_http = 1;
    snprintf(s->base_url, sizeof s->base_url, "%s://127.0.0.1:%d", s->plain_http ? "http" : "https", s->port);
    snprintf(s->ca_path, sizeof s->ca_path, "%s/ca.pem", s->dir);
    snprintf(s->ca_key_path, sizeof s->ca_key_path, "%s/ca.key", s->dir);
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    return spawn(s, extra_args, 0);
}

int testserver_restart(testserver_t *s, const char *const *extra_args)
{
    if (s->pid > 0) {
        fprintf(stderr, "testserver: restart while the server is still running\n");
        return -1;
    }
    return spawn(s, extra_args, 1);
}

void testserver_kill(testserver_t *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    s->pid = 0;
}

static void remove_tree(const char *dir)
{
    char *cmd = util_strdup_printf("rm -rf '%s'", dir);
    if (cmd && system(cmd) != 0)
        fprintf(stderr, "testserver: could not remove %s\n", dir);
    free(cmd);
}

int testserver_stop_keep(testserver_t *s)
{
    int status = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int st = 0;
        int ticks = wait_ticks(); /* valgrind checks for leaks at exit: slow */
        for (int i = 0; i < ticks; i++) {
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (status == -1) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
    }
    if (status != 0) {
        fprintf(stderr, "testserver: server exit status %d; its log:\n", status);
        char *log = util_read_file(s->log_path, 1 << 20, NULL);
        if (log) {
            size_t n = strlen(log);
            fputs(n > 20000 ? log + n - 20000 : log, stderr);
        }
        free(log);
    }
    s->pid = 0;
    return status;
}

void testserver_remove_dir(testserver_t *s)
{
    if (!getenv("ORCHARD_KEEP_TEST_DIR"))
        remove_tree(s->dir);
}

int testserver_stop(testserver_t *s)
{
    int status = testserver_stop_keep(s);
    testserver_remove_dir(s);
    return status;
}

int testserver_log_contains(const testserver_t *s, const char *needle)
{
    char *log = util_read_file(s->log_path, 64 << 20, NULL);
    int found = log && strstr(log, needle) != NULL;
    free(log);
    return found;
}

int testserver_device_identity(const testserver_t *s, const char *udid, EVP_PKEY **key, X509 **cert)
{
    return testpki_issue_device_identity(s->ca_path, s->ca_key_path, udid, key, cert);
}

devsim_t *testserver_devsim(const testserver_t *s, const char *udid, devsim_auth_t auth)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (testserver_device_identity(s, udid, &key, &cert) != 0)
        return NULL;
    devsim_t *d = devsim_new(s->base_url, s->ca_path, udid, key, cert, auth);
    EVP_PKEY_free(key);
    X509_free(cert);
    return d;
}

char *testserver_command_xml(const char *uuid, const char *rtype, plist_t *extra, size_t *len)
{
    plist_t *c = plist_new_dict();
    plist_t *inner = extra ? extra : plist_new_dict();
    if (rtype)
        plist_dict_set(inner, "RequestType", plist_new_string(rtype));
    plist_dict_set(c, "Command", inner);
    if (uuid)
        plist_dict_set(c, "CommandUUID", plist_new_string(uuid));
    char *xml = plist_to_xml(c, len);
    plist_free(c);
    return xml;
}
