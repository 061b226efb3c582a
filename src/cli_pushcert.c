/* `orchard pushcert csr|sign|import|show`. Thin wrappers around pushcert.h
 * that parse options, find the password and print what happened. Passwords
 * are never printed, logged or echoed. */
#include "cli_pushcert.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pushcert.h"
#include "util.h"

#define PASSWORD_ENV "ORCHARD_P12_PASSWORD"
#define MAX_CHAIN 16
#define PORTAL_URL "https://identity.apple.com/pushcert"

enum { SUB_CSR = 1, SUB_SIGN = 2, SUB_IMPORT = 4, SUB_SHOW = 8 };

typedef struct {
    const char *out_key, *out_csr, *cn, *org;
    const char *csr, *vendor_cert, *vendor_key, *vendor_p12, *out, *digest;
    const char *chain[MAX_CHAIN];
    size_t nchain;
    const char *cert, *key, *p12, *data_dir;
    int force;
    char *password; /* heap copy, wiped on exit */
    int have_password;
} opts_t;

static const char *const help_csr =
    "usage: orchard pushcert csr --out-key FILE --out-csr FILE [--cn NAME] [--org ORG] [--force]\n"
    "\n"
    "Customer step 1: makes an RSA-2048 private key and a certificate signing\n"
    "request (SHA-256) for the APNs MDM push certificate.\n"
    "\n"
    "  --out-key FILE   where to write the private key (PEM, mode 0600). Keep it on\n"
    "                   this server: the certificate Apple issues works only with it\n"
    "  --out-csr FILE   where to write the CSR (PEM); send it to your MDM vendor\n"
    "  --cn NAME        subject common name (default \"" PUSHCERT_DEFAULT_CN "\")\n"
    "  --org ORG        subject organization\n"
    "  --force          replace an existing key file\n";

static const char *const help_sign =
    "usage: orchard pushcert sign --csr FILE (--vendor-cert FILE --vendor-key FILE | --vendor-p12 FILE)\n"
    "                             [--password P] [--chain FILE...] [--digest sha1|sha256] --out FILE\n"
    "\n"
    "MDM vendor step: signs a customer's CSR with the MDM signing certificate and\n"
    "writes the base64-encoded PushCertWebRequest plist (PushCertRequestCSR,\n"
    "PushCertCertificateChain, PushCertSignature) that the customer uploads to\n"
    "the Apple Push Certificates Portal (" PORTAL_URL ").\n"
    "\n"
    "  --csr FILE          the customer's CSR (PEM or DER)\n"
    "  --vendor-cert FILE  the MDM signing certificate from Apple (PEM or DER)\n"
    "  --vendor-key FILE   its private key (PEM or DER; encrypted PEM needs the password)\n"
    "  --vendor-p12 FILE   the certificate and key as PKCS#12, instead of the two above\n"
    "  --password P        PKCS#12 or key password; prefer the environment variable\n"
    "                      " PASSWORD_ENV " (command lines are visible to other users).\n"
    "                      Without either, orchard asks on the terminal when needed\n"
    "  --chain FILE...     the Apple WWDR intermediate and the Apple Inc. root (PEM or\n"
    "                      DER, any order; repeat the option or list several files).\n"
    "                      Apple requires the complete chain up to and including the root\n"
    "  --digest ALG        signature hash: sha1 (SHA1WithRSA, as Apple's documentation\n"
    "                      specifies; the default) or sha256\n"
    "  --out FILE          where to write the request (e.g. PushCertRequest.b64)\n";

static const char *const help_import =
    "usage: orchard pushcert import (--cert FILE --key FILE | --p12 FILE [--password P])\n"
    "                               [--data-dir DIR] [--force]\n"
    "\n"
    "Customer step 3: installs the push certificate issued by the Apple Push\n"
    "Certificates Portal as DIR/push.pem and its key as DIR/push.key (mode 0600).\n"
    "Checks that the key matches and that the subject's UID is an MDM topic\n"
    "(" PUSHCERT_TOPIC_PREFIX "...), and warns when the certificate expires within\n"
    "30 days. Restart `orchard serve` afterwards.\n"
    "\n"
    "  --cert FILE     the certificate from Apple (MDM_..._Certificate.pem, PEM or DER)\n"
    "  --key FILE      the key made by `orchard pushcert csr`\n"
    "  --p12 FILE      certificate and key as PKCS#12, instead of the two above\n"
    "  --password P    PKCS#12 password; prefer the environment variable\n"
    "                  " PASSWORD_ENV ". Without either, orchard asks on the terminal\n"
    "  --data-dir DIR  orchard's data directory [env ORCHARD_DATA_DIR] (default ./var)\n"
    "  --force         replace an installed certificate that has a different topic\n"
    "                  (renewals keep the topic; a new topic means re-enrolling devices)\n";

static const char *const help_show =
    "usage: orchard pushcert show [--data-dir DIR]\n"
    "\n"
    "Shows the installed push certificate (DIR/push.pem): topic, subject,\n"
    "expiry date and days left.\n"
    "\n"
    "  --data-dir DIR  orchard's data directory [env ORCHARD_DATA_DIR] (default ./var)\n";

static void usage_all(FILE *out)
{
    fputs("usage: orchard pushcert COMMAND [options]\n"
          "\n"
          "APNs push certificate for MDM, following Apple's MDM Vendor CSR Signing Overview:\n"
          "  csr     customer: make a private key and a certificate signing request\n"
          "  sign    MDM vendor: sign a CSR into the PushCertWebRequest for Apple's portal\n"
          "  import  customer: install the certificate Apple issued\n"
          "  show    show the installed certificate\n"
          "\n"
          "Each command has --help.\n",
          out);
}

/* ---- options ------------------------------------------------------------- */

typedef struct {
    const char *name;
    unsigned subs;
    size_t off; /* offsetof(opts_t, field) for a string value; SPECIAL: handled in parse() */
} opt_def_t;

#define OFF(f) offsetof(opts_t, f)
#define SPECIAL ((size_t)-1)

static const opt_def_t opt_defs[] = {
    {"--out-key", SUB_CSR, OFF(out_key)},
    {"--out-csr", SUB_CSR, OFF(out_csr)},
    {"--cn", SUB_CSR, OFF(cn)},
    {"--org", SUB_CSR, OFF(org)},
    {"--csr", SUB_SIGN, OFF(csr)},
    {"--vendor-cert", SUB_SIGN, OFF(vendor_cert)},
    {"--vendor-key", SUB_SIGN, OFF(vendor_key)},
    {"--vendor-p12", SUB_SIGN, OFF(vendor_p12)},
    {"--out", SUB_SIGN, OFF(out)},
    {"--digest", SUB_SIGN, OFF(digest)},
    {"--chain", SUB_SIGN, SPECIAL},
    {"--password", SUB_SIGN | SUB_IMPORT, SPECIAL},
    {"--cert", SUB_IMPORT, OFF(cert)},
    {"--key", SUB_IMPORT, OFF(key)},
    {"--p12", SUB_IMPORT, OFF(p12)},
    {"--data-dir", SUB_IMPORT | SUB_SHOW, OFF(data_dir)},
};

/* Copies the password out of argv and blanks the argument, so it does not
 * stay readable in /proc/PID/cmdline for the rest of the run. */
static int take_password(opts_t *o, char *arg)
{
    if (o->password) { /* given twice: the last one wins */
        OPENSSL_cleanse(o->password, strlen(o->password));
        free(o->password);
        o->password = NULL;
    }
    o->password = strdup(arg);
    OPENSSL_cleanse(arg, strlen(arg));
    o->have_password = o->password != NULL;
    return o->password ? 0 : -1;
}

/* 0 ok, 1 --help, -1 usage error (reported). */
static int parse(const char *sub_name, unsigned sub, int argc, char **argv, opts_t *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--force") == 0 && (sub & (SUB_CSR | SUB_IMPORT))) {
            o->force = 1;
            continue;
        }
        /* --name=value is accepted too. */
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const opt_def_t *d = NULL;
        for (size_t k = 0; k < sizeof opt_defs / sizeof opt_defs[0] && !d; k++)
            if (strlen(opt_defs[k].name) == nlen && strncmp(opt_defs[k].name, a, nlen) == 0)
                d = &opt_defs[k];
        if (!d || !(d->subs & sub)) {
            fprintf(stderr, "orchard pushcert %s: unknown option %.*s (see --help)\n", sub_name, (int)nlen, a);
            return -1;
        }
        char *val;
        if (eq) {
            val = (char *)eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "orchard pushcert %s: %s needs a value\n", sub_name, d->name);
                return -1;
            }
            val = argv[++i];
        }
        if (strcmp(d->name, "--password") == 0) {
            if (take_password(o, val) != 0) {
                fprintf(stderr, "orchard pushcert: out of memory\n");
                return -1;
            }
        } else if (strcmp(d->name, "--chain") == 0) {
            /* --chain A B C: the files that follow, up to the next option. */
            for (;;) {
                if (o->nchain == MAX_CHAIN) {
                    fprintf(stderr, "orchard pushcert %s: more than %d chain files\n", sub_name, MAX_CHAIN);
                    return -1;
                }
                o->chain[o->nchain++] = val;
                if (eq || i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                    break;
                val = argv[++i];
            }
        } else {
            *(const char **)((char *)o + d->off) = val;
        }
    }
    return 0;
}

/* While echo is off: the terminal to restore if the user interrupts the
 * prompt (Ctrl-C), so the shell is not left without echo. */
static int prompt_fd = -1;
static struct termios prompt_saved;

static void prompt_interrupted(int sig)
{
    if (prompt_fd >= 0)
        tcsetattr(prompt_fd, TCSAFLUSH, &prompt_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads a password from the terminal with echo off. NULL when there is no
 * terminal (then the caller goes on without a password). */
static char *prompt_password(const char *what)
{
    if (!isatty(STDIN_FILENO))
        return NULL;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct termios saved, quiet;
    if (tcgetattr(fd, &saved) != 0) {
        close(fd);
        return NULL;
    }
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    char prompt[256];
    int plen = snprintf(prompt, sizeof prompt, "%s password: ", what);
    if (plen > 0 && write(fd, prompt, (size_t)plen < sizeof prompt ? (size_t)plen : sizeof prompt - 1) < 0) {
        close(fd);
        return NULL;
    }
    static const int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
    struct sigaction sa, old_sa[5];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = prompt_interrupted;
    sigemptyset(&sa.sa_mask);
    prompt_saved = saved;
    prompt_fd = fd;
    for (int i = 0; i < 5; i++)
        sigaction(sigs[i], &sa, &old_sa[i]);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        for (int i = 0; i < 5; i++)
            sigaction(sigs[i], &old_sa[i], NULL);
        prompt_fd = -1;
        close(fd);
        return NULL;
    }
    char buf[1024];
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0 || c == '\n' || c == '\r')
            break;
        if (n + 1 < sizeof buf)
            buf[n++] = c;
    }
    buf[n] = '\0';
    tcsetattr(fd, TCSAFLUSH, &saved);
    for (int i = 0; i < 5; i++)
        sigaction(sigs[i], &old_sa[i], NULL);
    prompt_fd = -1;
    if (write(fd, "\n", 1) < 0) {
        /* nothing useful to do: the newline is cosmetic */
    }
    close(fd);
    char *pw = strdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return pw;
}

/* The password: --password, else $ORCHARD_P12_PASSWORD, else a prompt when
 * `needed` (a PKCS#12 file is being read) and there is a terminal. */
static int resolve_password(opts_t *o, int needed, const char *what)
{
    if (o->have_password)
        return 0;
    const char *env = getenv(PASSWORD_ENV);
    if (env) {
        o->password = strdup(env);
        if (!o->password)
            return -1;
        o->have_password = 1;
        return 0;
    }
    if (needed && (o->password = prompt_password(what)) != NULL)
        o->have_password = 1;
    return 0;
}

static void free_opts(opts_t *o)
{
    if (o->password) {
        OPENSSL_cleanse(o->password, strlen(o->password));
        free(o->password);
    }
    memset(o, 0, sizeof *o);
}

/* ---- subcommands --------------------------------------------------------- */

static void print_info(const pushcert_info_t *info)
{
    printf("topic:      %s\n", info->topic);
    printf("subject:    %s\n", info->subject);
    printf("not after:  %s\n", info->not_after);
    if (info->expired)
        printf("days left:  0 (expired %ld day%s ago)\n", -info->days_left, info->days_left == -1 ? "" : "s");
    else
        printf("days left:  %ld\n", info->days_left);
}

static void warn_expiry(const pushcert_info_t *info)
{
    if (info->expired)
        fprintf(stderr,
                "orchard pushcert: warning: the push certificate EXPIRED on %s; devices cannot be woken until it "
                "is renewed in the Apple Push Certificates Portal (" PORTAL_URL ") and imported again\n",
                info->not_after);
    else if (info->expiring)
        fprintf(stderr,
                "orchard pushcert: warning: the push certificate expires in %ld day%s (%s); renew it in the Apple "
                "Push Certificates Portal (" PORTAL_URL ") with the same Apple ID (Renew, so the topic stays "
                "the same) and import the renewed certificate\n",
                info->days_left, info->days_left == 1 ? "" : "s", info->not_after);
}

static int fail(const char *sub, char *err)
{
    fprintf(stderr, "orchard pushcert %s: %s\n", sub, err ? err : "failed");
    free(err);
    return 1;
}

static int run_csr(opts_t *o)
{
    if (!o->out_key || !o->out_csr) {
        fprintf(stderr, "orchard pushcert csr: --out-key and --out-csr are required (see --help)\n");
        return 2;
    }
    char *err = NULL;
    if (pushcert_csr_files(o->out_key, o->out_csr, o->cn, o->org, o->force, &err) != 0)
        return fail("csr", err);
    printf("wrote %s (private key, mode 0600: keep it on this server, never send it to anyone)\n", o->out_key);
    printf("wrote %s (certificate signing request)\n", o->out_csr);
    printf("next: send %s to your MDM vendor; they return a PushCertRequest file to upload at " PORTAL_URL
           ". Then: orchard pushcert import --cert MDM_..._Certificate.pem --key %s\n",
           o->out_csr, o->out_key);
    return 0;
}

static int run_sign(opts_t *o)
{
    if (!o->csr || !o->out || (!o->vendor_p12 && (!o->vendor_cert || !o->vendor_key))) {
        fprintf(stderr,
                "orchard pushcert sign: --csr, --out and either --vendor-cert with --vendor-key or --vendor-p12 "
                "are required (see --help)\n");
        return 2;
    }
    if (o->vendor_p12 && (o->vendor_cert || o->vendor_key)) {
        fprintf(stderr, "orchard pushcert sign: give --vendor-p12 or --vendor-cert/--vendor-key, not both\n");
        return 2;
    }
    pushcert_sig_t sig = PUSHCERT_SIG_SHA1;
    if (o->digest && strcmp(o->digest, "sha256") == 0) {
        sig = PUSHCERT_SIG_SHA256;
    } else if (o->digest && strcmp(o->digest, "sha1") != 0) {
        fprintf(stderr, "orchard pushcert sign: --digest must be sha1 or sha256 (got '%s')\n", o->digest);
        return 2;
    }
    if (resolve_password(o, o->vendor_p12 != NULL, o->vendor_p12 ? o->vendor_p12 : "vendor key") != 0)
        return fail("sign", strdup("out of memory"));
    pushcert_sign_opts_t so = {
        .csr_path = o->csr,
        .vendor_cert_path = o->vendor_cert,
        .vendor_key_path = o->vendor_key,
        .vendor_p12_path = o->vendor_p12,
        .password = o->password,
        .chain_paths = o->chain,
        .nchain = o->nchain,
        .sig = sig,
    };
    pushcert_sign_result_t res;
    char *err = NULL;
    if (pushcert_sign(&so, &res, &err) != 0)
        return fail("sign", err);
    int rc = 0;
    if (util_write_file(o->out, res.request_b64, res.request_len, 0644) != 0) {
        rc = fail("sign", util_strdup_printf("%s: cannot write the request: %s", o->out, strerror(errno)));
    } else {
        printf("wrote %s (PushCertWebRequest, %s signature, chain of %d certificate%s)\n", o->out,
               sig == PUSHCERT_SIG_SHA1 ? "SHA1WithRSA" : "SHA256WithRSA", res.chain_len,
               res.chain_len == 1 ? "" : "s");
        printf("next: the customer uploads %s at " PORTAL_URL "\n", o->out);
        if (!res.chain_complete)
            fprintf(stderr,
                    "orchard pushcert sign: warning: the certificate chain does not end at a root certificate. "
                    "Apple requires PushCertCertificateChain to hold the complete chain: your MDM signing "
                    "certificate, the WWDR intermediate and the Apple Inc. root (--chain FILE...)\n");
    }
    pushcert_sign_result_clear(&res);
    return rc;
}

static int run_import(opts_t *o)
{
    if (!o->p12 && (!o->cert || !o->key)) {
        fprintf(stderr, "orchard pushcert import: give --cert and --key, or --p12 (see --help)\n");
        return 2;
    }
    if (o->p12 && (o->cert || o->key)) {
        fprintf(stderr, "orchard pushcert import: give --p12 or --cert/--key, not both\n");
        return 2;
    }
    if (resolve_password(o, o->p12 != NULL, o->p12 ? o->p12 : "key") != 0)
        return fail("import", strdup("out of memory"));
    pushcert_import_opts_t io = {
        .cert_path = o->cert,
        .key_path = o->key,
        .p12_path = o->p12,
        .password = o->password,
        .data_dir = o->data_dir,
        .force = o->force,
    };
    pushcert_info_t info;
    char *err = NULL;
    if (pushcert_import(&io, &info, &err) != 0)
        return fail("import", err);
    printf("%s %s/push.pem and %s/push.key (mode 0600)\n", info.replaced ? "replaced" : "installed", o->data_dir,
           o->data_dir);
    print_info(&info);
    printf("restart `orchard serve` to use it; enrollment profiles will carry Topic %s\n", info.topic);
    warn_expiry(&info);
    pushcert_info_clear(&info);
    return 0;
}

static int run_show(opts_t *o)
{
    pushcert_info_t info;
    char *err = NULL;
    if (pushcert_show(o->data_dir, &info, &err) != 0)
        return fail("show", err);
    print_info(&info);
    warn_expiry(&info);
    pushcert_info_clear(&info);
    return 0;
}

int cli_pushcert_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_all(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const struct {
        const char *name;
        unsigned sub;
        const char *help;
    } subs[] = {
        {"csr", SUB_CSR, help_csr},
        {"sign", SUB_SIGN, help_sign},
        {"import", SUB_IMPORT, help_import},
        {"show", SUB_SHOW, help_show},
    };
    size_t k = 0;
    while (k < 4 && strcmp(argv[1], subs[k].name) != 0)
        k++;
    if (k == 4) {
        fprintf(stderr, "orchard pushcert: unknown command '%s'\n", argv[1]);
        usage_all(stderr);
        return 2;
    }
    opts_t o;
    memset(&o, 0, sizeof o);
    int p = parse(subs[k].name, subs[k].sub, argc, argv, &o);
    if (p != 0) {
        if (p > 0)
            fputs(subs[k].help, stdout); /* errors were reported by parse() */
        free_opts(&o);
        return p > 0 ? 0 : 2;
    }
    if (!o.data_dir || !*o.data_dir) {
        const char *env = getenv("ORCHARD_DATA_DIR");
        o.data_dir = env && *env ? env : "./var";
    }
    int rc;
    switch (subs[k].sub) {
    case SUB_CSR: rc = run_csr(&o); break;
    case SUB_SIGN: rc = run_sign(&o); break;
    case SUB_IMPORT: rc = run_import(&o); break;
    default: rc = run_show(&o); break;
    }
    fflush(stdout);
    free_opts(&o);
    return rc;
}
