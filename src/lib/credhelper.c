/* Docker credential helpers: see credhelper.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "credhelper.h"
#include "error_int.h"
#include "log_int.h"

#define TOKEN_USERNAME "<token>" /* docker/cli native_store.go tokenUsername */
#define NOT_FOUND_TEXT "credentials not found"
#define HELPER_NAME_MAX 100

extern char **environ;

static bool
helper_name_ok(const char *h)
{
    size_t n = 0;

    for (; h[n]; n++) {
        char c = h[n];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0 && n <= HELPER_NAME_MAX;
}

/* Write all of BUF to FD, ignoring EPIPE (a helper may exit without reading its stdin; its
 * exit status tells what happened). SIGPIPE is blocked in this thread meanwhile and a
 * pending one discarded, so the caller's process does not die of it. */
static int
write_key(int fd, const char *buf, size_t len)
{
    sigset_t block, old;
    int ret = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE) {
                struct timespec zero = {0, 0};

                if (!sigismember(&old, SIGPIPE))
                    while (sigtimedwait(&block, NULL, &zero) == SIGPIPE)
                        ;
            } else {
                ret = -errno;
            }
            break;
        }
        buf += n;
        len -= (size_t)n;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

/* The first line of the helper's output, trimmed, control bytes replaced, at most 200
 * bytes: for messages. Helpers print their errors there; it holds no secret. */
static void
first_line(char *dst, size_t dstsz, const char *out, size_t len)
{
    size_t i = 0, j = 0;

    while (i < len && (out[i] == ' ' || out[i] == '\t' || out[i] == '\r' || out[i] == '\n'))
        i++;
    for (; i < len && out[i] != '\n' && out[i] != '\r' && j + 1 < dstsz && j < 200; i++)
        dst[j++] = ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) ? '?' : out[i];
    while (j > 0 && (dst[j - 1] == ' ' || dst[j - 1] == '\t'))
        j--;
    dst[j] = '\0';
}

static const char *
member(json_t *obj, const char *name)
{
    void *it;

    /* Go's encoding/json matches field names case-insensitively (an explicit iterator:
     * clang-format cannot lay json_object_foreach out as a loop) */
    for (it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        json_t *v = json_object_iter_value(it);

        if (strcasecmp(json_object_iter_key(it), name) == 0)
            return json_is_string(v) ? json_string_value(v) : NULL;
    }
    return NULL;
}

static bool
member_is_bad(json_t *obj, const char *name)
{
    void *it;

    for (it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        json_t *v = json_object_iter_value(it);

        if (strcasecmp(json_object_iter_key(it), name) == 0)
            return !json_is_string(v) && !json_is_null(v);
    }
    return false;
}

/* Wipe the secret copies jansson holds before they go back to the allocator. */
static void
json_wipe(json_t *obj)
{
    void *it;

    if (!json_is_object(obj))
        return;
    for (it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        json_t *v = json_object_iter_value(it);

        if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
}

static int
parse_answer(csi_credential *out, const char *helper, const char *buf, size_t len, cs_error **err)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    const char *user, *secret;
    int ret = 0;

    if (!json_is_object(root) || member_is_bad(root, "Username") || member_is_bad(root, "Secret")) {
        /* never quote the output: it may be a secret in a shape we did not expect */
        ret = csi_error_set(err, CS_EPROTO,
                            "docker-credential-%s get: the answer is not a JSON object with "
                            "string Username and Secret",
                            helper);
        goto out;
    }
    user = member(root, "Username");
    secret = member(root, "Secret");
    if (user != NULL && strcmp(user, TOKEN_USERNAME) == 0) {
        if (secret != NULL && *secret) {
            out->identity_token = strdup(secret);
            if (out->identity_token == NULL)
                ret = csi_error_oom(err);
        }
        goto out;
    }
    if (user != NULL && *user) {
        out->username = strdup(user);
        if (out->username == NULL) {
            ret = csi_error_oom(err);
            goto out;
        }
        if (secret != NULL && *secret) {
            out->password = strdup(secret);
            if (out->password == NULL)
                ret = csi_error_oom(err);
        }
    } else if (secret != NULL && *secret) {
        /* a secret without a user name: docker would send it as ":secret"; too odd */
        ret = csi_error_set(err, CS_EPROTO,
                            "docker-credential-%s get: the answer has a Secret but no Username",
                            helper);
    }
out:
    if (ret < 0) {
        free(out->username);
        out->username = NULL;
        if (out->password != NULL) {
            OPENSSL_cleanse(out->password, strlen(out->password));
            free(out->password);
            out->password = NULL;
        }
        if (out->identity_token != NULL) {
            OPENSSL_cleanse(out->identity_token, strlen(out->identity_token));
            free(out->identity_token);
            out->identity_token = NULL;
        }
    }
    json_wipe(root);
    json_decref(root);
    return ret;
}

/* The output of one helper run. */
typedef struct run_result {
    char *buf; /* CSI_CREDHELPER_MAX_OUTPUT + 1 bytes, NUL-terminated output */
    size_t len;
    bool overflow; /* it printed more than the cap (the rest was discarded) */
    int status;    /* its wait status */
} run_result;

static void
run_result_dispose(run_result *r)
{
    if (r->buf != NULL) {
        OPENSSL_cleanse(r->buf, CSI_CREDHELPER_MAX_OUTPUT + 1);
        free(r->buf);
    }
    memset(r, 0, sizeof(*r));
}

static int
check_helper(const char *helper, cs_error **err)
{
    if (helper == NULL || !helper_name_ok(helper))
        return csi_error_set(err, CS_EINVAL,
                             "docker config: credential helper name \"%.100s\" is not "
                             "[A-Za-z0-9._-]+",
                             helper ? helper : "");
    return 0;
}

/* Run `docker-credential-HELPER ACTION` with INPUT (LEN bytes) on its stdin and collect its
 * stdout into OUT. Only failures to run it are errors here; its exit status is the caller's
 * to read. */
static int
run_helper(run_result *out, const char *helper, const char *action, const char *input, size_t len,
           cs_error **err)
{
    char prog[sizeof("docker-credential-") + HELPER_NAME_MAX];
    char *argv[3];
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    bool fa_ok = false;
    pid_t pid = -1;
    int rc, ret = 0;

    memset(out, 0, sizeof(*out));
    ret = check_helper(helper, err);
    if (ret < 0)
        return ret;
    snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
    argv[0] = prog;
    argv[1] = (char *)action;
    argv[2] = NULL;

    out->buf = malloc(CSI_CREDHELPER_MAX_OUTPUT + 1);
    if (out->buf == NULL)
        return csi_error_oom(err);
    if (pipe2(in_pipe, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0) {
        ret = csi_error_errno(err, errno, "%s: pipe", prog);
        goto out;
    }
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        ret = csi_error_errno(err, rc, "%s", prog);
        goto out;
    }
    fa_ok = true;
    /* dup2 clears close-on-exec on the copies; the originals close at exec */
    if ((rc = posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1)) != 0) {
        ret = csi_error_errno(err, rc, "%s", prog);
        goto out;
    }
    rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    if (rc != 0) {
        pid = -1;
        if (rc == ENOENT)
            ret = csi_error_set(err, CS_ERROR,
                                "%s not found on PATH (configured in the docker config's "
                                "credHelpers/credsStore)",
                                prog);
        else
            ret = csi_error_errno(err, rc, "cannot run %s", prog);
        goto out;
    }
    close(in_pipe[0]);
    in_pipe[0] = -1;
    close(out_pipe[1]);
    out_pipe[1] = -1;

    /* a key or one small JSON object: it fits the pipe buffer, no deadlock with reading */
    rc = write_key(in_pipe[1], input, len);
    close(in_pipe[1]);
    in_pipe[1] = -1;
    if (rc < 0) {
        ret = csi_error_errno(err, -rc, "%s %s: writing its input", prog, action);
        goto out;
    }
    for (;;) {
        char drain[4096];
        ssize_t n;

        if (out->len < CSI_CREDHELPER_MAX_OUTPUT)
            n = read(out_pipe[0], out->buf + out->len, CSI_CREDHELPER_MAX_OUTPUT - out->len);
        else
            n = read(out_pipe[0], drain, sizeof(drain));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = csi_error_errno(err, errno, "%s %s: reading its answer", prog, action);
            goto out;
        }
        if (n == 0)
            break;
        if (out->len < CSI_CREDHELPER_MAX_OUTPUT) {
            out->len += (size_t)n;
        } else {
            OPENSSL_cleanse(drain, (size_t)n);
            out->overflow = true;
        }
    }
    out->buf[out->len] = '\0';
out:
    if (pid > 0) {
        if (ret < 0)
            kill(pid, SIGTERM);
        while (waitpid(pid, &out->status, 0) < 0 && errno == EINTR)
            ;
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (in_pipe[i] >= 0)
            close(in_pipe[i]);
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
    }
    if (ret < 0)
        run_result_dispose(out);
    return ret;
}

static bool
exited_ok(const run_result *r)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static bool
said_not_found(const run_result *r)
{
    return memmem(r->buf, r->len, NOT_FOUND_TEXT, strlen(NOT_FOUND_TEXT)) != NULL;
}

/* The error for a helper run that did not exit 0: CODE, naming the action and the key, with
 * the first line of its output (where helpers print their errors). */
static int
run_failed(const run_result *r, int code, const char *helper, const char *action,
           const char *server_key, cs_error **err)
{
    char line[256];

    first_line(line, sizeof(line), r->buf, r->len);
    if (WIFEXITED(r->status))
        return csi_error_set(err, code,
                             "docker-credential-%s %s for %s failed (exit status %d)%s%s", helper,
                             action, server_key, WEXITSTATUS(r->status), *line ? ": " : "", line);
    return csi_error_set(err, code, "docker-credential-%s %s for %s was killed by signal %d%s%s",
                         helper, action, server_key,
                         WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0, *line ? ": " : "", line);
}

int
csi_credhelper_get(csi_credential *out, const char *helper, const char *server_key, cs_error **err)
{
    run_result r;
    int ret;

    ret = check_helper(helper, err);
    if (ret < 0)
        return ret;
    if (server_key == NULL || !*server_key)
        return csi_error_set(err, CS_EINVAL, "docker-credential-%s: no server key", helper);
    csi_log(CS_LOG_DEBUG, "asking docker-credential-%s for %s", helper, server_key);
    ret = run_helper(&r, helper, "get", server_key, strlen(server_key), err);
    if (ret < 0)
        return ret;
    if (exited_ok(&r)) {
        if (r.overflow)
            ret = csi_error_set(err, CS_ELIMIT, "docker-credential-%s get: answer over %u bytes",
                                helper, CSI_CREDHELPER_MAX_OUTPUT);
        else
            ret = parse_answer(out, helper, r.buf, r.len, err);
    } else if (said_not_found(&r)) {
        csi_log(CS_LOG_DEBUG, "docker-credential-%s has no credentials for %s", helper, server_key);
    } else {
        ret = run_failed(&r, CS_EAUTH, helper, "get", server_key, err);
    }
    run_result_dispose(&r);
    return ret;
}

int
csi_credhelper_store(const char *helper, const char *server_key, const char *username,
                     const char *secret, cs_error **err)
{
    json_t *obj = NULL;
    char *input = NULL;
    run_result r = {0};
    int ret;

    ret = check_helper(helper, err);
    if (ret < 0)
        return ret;
    if (server_key == NULL || !*server_key || username == NULL || secret == NULL)
        return csi_error_set(err, CS_EINVAL, "docker-credential-%s store: missing field", helper);
    /* docker-credential-helpers credentials.Credentials */
    obj =
        json_pack("{s:s,s:s,s:s}", "ServerURL", server_key, "Username", username, "Secret", secret);
    input = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (input == NULL) {
        ret = csi_error_oom(err);
        goto out;
    }
    csi_log(CS_LOG_DEBUG, "storing the credentials for %s in docker-credential-%s", server_key,
            helper);
    ret = run_helper(&r, helper, "store", input, strlen(input), err);
    if (ret == 0 && !exited_ok(&r))
        ret = run_failed(&r, CS_ERROR, helper, "store", server_key, err);
out:
    run_result_dispose(&r);
    if (input != NULL) {
        OPENSSL_cleanse(input, strlen(input));
        free(input);
    }
    json_wipe(obj);
    json_decref(obj);
    return ret;
}

int
csi_credhelper_erase(bool *found, const char *helper, const char *server_key, cs_error **err)
{
    run_result r;
    int ret;

    *found = false;
    ret = check_helper(helper, err);
    if (ret < 0)
        return ret;
    if (server_key == NULL || !*server_key)
        return csi_error_set(err, CS_EINVAL, "docker-credential-%s: no server key", helper);
    csi_log(CS_LOG_DEBUG, "erasing the credentials for %s from docker-credential-%s", server_key,
            helper);
    ret = run_helper(&r, helper, "erase", server_key, strlen(server_key), err);
    if (ret < 0)
        return ret;
    if (exited_ok(&r))
        *found = true;
    else if (!said_not_found(&r))
        ret = run_failed(&r, CS_ERROR, helper, "erase", server_key, err);
    run_result_dispose(&r);
    return ret;
}
