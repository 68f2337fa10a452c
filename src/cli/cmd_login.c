/* cachesync login / logout: `docker login` and `docker logout`, same file, same helpers. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cachesync/login.h>
#include "cli_output.h"
#include "cmd.h"

#define SECRET_MAX (64 * 1024) /* bytes read for a password; the library caps it lower */

const char login_usage[] =
    "usage: cachesync login [HOST] [-u USER] [--password-stdin | -p PASSWORD]\n"
    "\n"
    "Log in to the registry at HOST[:PORT] (default: Docker Hub) as `docker login` does, in\n"
    "the same Docker client config, so that docker and cachesync both use the result. The\n"
    "credentials are checked with the registry first (its Basic or token authentication);\n"
    "only then are they stored: by the credential helper that credHelpers[HOST] or\n"
    "credsStore of config.json names (docker-credential-NAME store), else as \"auth\" in\n"
    "config.json (mode 0600, every other setting kept).\n"
    "\n"
    "  -u, --username USER  the user name (asked for on a terminal)\n"
    "  --password-stdin     read the password (or token) from standard input; one\n"
    "                       trailing newline is dropped\n"
    "  -p, --password PW    the password on the command line, where other users of the\n"
    "                       machine may see it\n"
    "\n"
    "Without a user name or password, the credentials already stored for HOST are checked\n"
    "(on a terminal, they are asked for when there are none). Exit 4 when the registry\n"
    "refuses them; nothing is written then.\n";

const char logout_usage[] =
    "usage: cachesync logout [HOST]\n"
    "\n"
    "Remove the credentials stored for the registry at HOST[:PORT] (default: Docker Hub) as\n"
    "`docker logout` does: from the credential helper that holds them\n"
    "(docker-credential-NAME erase) and from config.json. A registry not logged in to is\n"
    "not an error.\n";

typedef struct login_args {
    const char *username;
    const char *password;
    bool password_stdin;
} login_args;

static int
login_option(int c, const char *arg, void *payload)
{
    login_args *a = payload;

    switch (c) {
    case 'u':
        a->username = arg;
        return 0;
    case 'p':
        a->password = arg;
        return 0;
    case 's':
        a->password_stdin = true;
        return 0;
    default:
        return cli_usage("login", "unexpected option");
    }
}

/* Long options taking a value in a separate argument: that argument is a value, never an
 * option to rewrite (a password may well be "-u"). */
static bool
takes_value(const char *arg)
{
    static const char *const with_value[] = {"--username",          "--password", "--jobs",
                                             "--platform",          "--store",    "--docker-config",
                                             "--insecure-registry", "--ca-cert",  NULL};

    for (const char *const *w = with_value; *w != NULL; w++) {
        if (strcmp(arg, *w) == 0)
            return true;
    }
    return false;
}

/* cli_parse knows only the global short options: give -u/-p (docker's) their long names.
 * *COPY gets the new argv (NULL-terminated); the strings made for "-uUSER" follow its
 * terminator, to be freed with it by free_long_names. */
static int
long_names(char ***copy, int argc, char **argv)
{
    char **v = calloc(2 * (size_t)argc + 2, sizeof(*v));
    char **made;
    int i;

    if (v == NULL)
        return -1;
    made = v + argc + 1;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];

        v[i] = argv[i];
        if (i == 0)
            continue;
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++)
                v[i] = argv[i];
            break;
        }
        if (takes_value(a) || strcmp(a, "-u") == 0 || strcmp(a, "-p") == 0) {
            if (strcmp(a, "-u") == 0 || strcmp(a, "-p") == 0)
                v[i] = (char *)(a[1] == 'u' ? "--username" : "--password");
            if (i + 1 < argc) {
                i++;
                v[i] = argv[i];
            }
        } else if ((strncmp(a, "-u", 2) == 0 || strncmp(a, "-p", 2) == 0) && a[2] != '\0') {
            if (asprintf(made, "--%s=%s", a[1] == 'u' ? "username" : "password", a + 2) < 0) {
                *made = NULL;
                free(v);
                return -1;
            }
            v[i] = *made++;
        }
    }
    *copy = v;
    return 0;
}

static void
free_long_names(char **v, int argc)
{
    if (v == NULL)
        return;
    for (char **m = v + argc + 1; *m != NULL; m++) {
        OPENSSL_cleanse(*m, strlen(*m));
        free(*m);
    }
    free(v);
}

static void
free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* All of standard input as the password, without one trailing "\n" and then one "\r" (what
 * docker login --password-stdin strips). */
static int
read_password_stdin(char **out)
{
    char *buf = malloc(SECRET_MAX + 1);
    size_t len = 0;

    *out = NULL;
    if (buf == NULL) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAILURE;
    }
    while (len <= SECRET_MAX) {
        ssize_t n = read(STDIN_FILENO, buf + len, SECRET_MAX + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_errorf("cannot read the password from standard input: %s", strerror(errno));
            free_secret(buf);
            return CLI_EXIT_FAILURE;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > SECRET_MAX) {
        OPENSSL_cleanse(buf, SECRET_MAX + 1);
        free(buf);
        return cli_usage("login", "the password on standard input is over %d bytes", SECRET_MAX);
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        free_secret(buf);
        return cli_usage("login", "the password on standard input holds a NUL byte");
    }
    *out = buf;
    return 0;
}

/* Prompt on stderr and read one line from the terminal on stdin, echoing it or not. */
static int
prompt(char **out, const char *what, bool echo)
{
    struct termios old, quiet;
    bool restore = false;
    char *buf = malloc(SECRET_MAX + 1);
    size_t len = 0;

    *out = NULL;
    if (buf == NULL) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAILURE;
    }
    if (!echo && tcgetattr(STDIN_FILENO, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        /* TCSANOW, not TCSAFLUSH: a password typed ahead is kept, not thrown away */
        restore = tcsetattr(STDIN_FILENO, TCSANOW, &quiet) == 0;
    }
    /* the prompt once echo is off: whatever answers it is not shown */
    fprintf(stderr, "%s: ", what);
    fflush(stderr);
    for (;;) {
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == '\n')
            break;
        if (len < SECRET_MAX)
            buf[len++] = c;
    }
    if (restore)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    /* docker trims the user name it reads */
    if (echo) {
        char *s = buf + strspn(buf, " \t");

        memmove(buf, s, strlen(s) + 1);
        for (len = strlen(buf); len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t');)
            buf[--len] = '\0';
    }
    *out = buf;
    return 0;
}

static void
print_result(const cs_login_result *r, bool login)
{
    char where[160];
    json_t *o;

    if (r->helper != NULL)
        snprintf(where, sizeof(where), "helper %s", r->helper);
    else
        snprintf(where, sizeof(where), "config.json");
    if (cli_g.json) {
        if (login)
            o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "registry", r->registry, "server_key",
                          r->server_key, "username", r->username, "stored_in", where, "config",
                          r->config_path, "stored", r->stored);
        else
            o = json_pack("{s:s,s:s,s:s,s:s,s:b}", "registry", r->registry, "server_key",
                          r->server_key, "stored_in", where, "config", r->config_path, "removed",
                          r->stored);
        if (o != NULL)
            cli_print_json(o);
        json_decref(o);
        return;
    }
    if (cli_g.quiet)
        return;
    if (!login)
        printf(r->stored ? "Removing login credentials for %s\n" : "Not logged in to %s\n",
               r->server_key);
    else
        printf("Login Succeeded\n");
}

/* The user name and password to try: the options, else stdin, else prompts on a terminal.
 * Returns 0 or an exit code. */
static int
credentials(char **user, char **pass, const login_args *a)
{
    int r;

    *user = NULL;
    *pass = NULL;
    if (a->password_stdin) {
        r = read_password_stdin(pass);
    } else if (a->password != NULL) {
        *pass = strdup(a->password);
        r = *pass == NULL ? CLI_EXIT_FAILURE : 0;
    } else if (!isatty(STDIN_FILENO)) {
        return cli_usage("login",
                         "no password given and standard input is not a terminal to ask for "
                         "one: use --password-stdin (with --username)");
    } else {
        r = 0;
    }
    if (r == 0 && a->username != NULL) {
        *user = strdup(a->username);
        r = *user == NULL ? CLI_EXIT_FAILURE : 0;
    } else if (r == 0) {
        if (!isatty(STDIN_FILENO))
            return cli_usage("login", "no --username given and standard input is not a "
                                      "terminal to ask for one");
        r = prompt(user, "Username", true);
    }
    if (r == 0 && *pass == NULL)
        r = prompt(pass, "Password", false);
    return r;
}

int
cmd_login(int argc, char **argv)
{
    static const struct option opts[] = {{"username", required_argument, NULL, 'u'},
                                         {"password", required_argument, NULL, 'p'},
                                         {"password-stdin", no_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    login_args a = {NULL, NULL, false};
    cs_login_options lo = {0};
    cs_login_result *res = NULL;
    cs_error *err = NULL;
    char **args = NULL, *user = NULL, *pass = NULL;
    int r;

    if (long_names(&args, argc, argv) < 0) {
        cli_errorf("out of memory");
        return CLI_EXIT_FAILURE;
    }
    r = cli_parse(argc, args, "login", opts, login_option, &a);
    if (r != 0) {
        r = r < 0 ? CLI_EXIT_OK : r;
        goto out;
    }
    if (argc - optind > 1) {
        r = cli_usage("login", "too many arguments");
        goto out;
    }
    if (a.password != NULL && a.password_stdin) {
        r = cli_usage("login", "--password and --password-stdin are mutually exclusive");
        goto out;
    }
    if (a.password_stdin && a.username == NULL) {
        r = cli_usage("login", "--password-stdin needs --username");
        goto out;
    }
    if (a.password != NULL)
        cli_warnf("a password on the command line is insecure (ps, shell history); use "
                  "--password-stdin");
    lo.server = optind < argc ? args[optind] : NULL;
    cli_registry_options(&lo.registry);
    if (a.username == NULL && a.password == NULL && !a.password_stdin) {
        /* docker login re-checks what is stored before it asks for anything */
        r = cs_login(&res, &lo, &err);
        if (r == 0)
            goto done;
        if (err == NULL || err->code != CS_ENOTFOUND) {
            r = cli_fail(err);
            goto out;
        }
        cs_error_free(err);
        err = NULL;
    }
    r = credentials(&user, &pass, &a);
    if (r != 0)
        goto out;
    lo.username = user;
    lo.password = pass;
    if (cs_login(&res, &lo, &err) < 0) {
        r = cli_fail(err);
        goto out;
    }
done:
    if (res->stored && res->helper == NULL)
        cli_warnf("the password is stored unencrypted in %s; a credential helper "
                  "(credsStore) avoids that",
                  res->config_path);
    print_result(res, true);
    r = CLI_EXIT_OK;
out:
    cs_login_result_free(res);
    free_secret(user);
    free_secret(pass);
    free_long_names(args, argc);
    return r;
}

int
cmd_logout(int argc, char **argv)
{
    cs_login_options lo = {0};
    cs_login_result *res = NULL;
    cs_error *err = NULL;
    int r;

    r = cli_parse(argc, argv, "logout", NULL, NULL, NULL);
    if (r != 0)
        return r < 0 ? CLI_EXIT_OK : r;
    if (argc - optind > 1)
        return cli_usage("logout", "too many arguments");
    lo.server = optind < argc ? argv[optind] : NULL;
    cli_registry_options(&lo.registry);
    if (cs_logout(&res, &lo, &err) < 0)
        return cli_fail(err);
    print_result(res, false);
    cs_login_result_free(res);
    return CLI_EXIT_OK;
}
