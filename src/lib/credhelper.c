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
    const char *key;
    json_t *v;

    /* Go's encoding/json matches field names case-insensitively */
    json_object_foreach(obj, key, v) {
        if (strcasecmp(key, name) == 0)
            return json_is_string(v) ? json_string_value(v) : NULL;
    }
    return NULL;
}

static bool
member_is_bad(json_t *obj, const char *name)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v) {
        if (strcasecmp(key, name) == 0)
            return !json_is_string(v) && !json_is_null(v);
    }
    return false;
}

/* Wipe the secret copies jansson holds before they go back to the allocator. */
static void
json_wipe(json_t *obj)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return;
    json_object_foreach(obj, key, v) {
        if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
}

static int
parse_answer(csi_credential *out, const char *helper, const char *buf, size_t len,
             cs_error **err)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    const char *user, *secret;
    int ret = 0;

    if (!json_is_object(root) || member_is_bad(root, "Username") ||
        member_is_bad(root, "Secret")) {
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

int
csi_credhelper_get(csi_credential *out, const char *helper, const char *server_key,
                   cs_error **err)
{
    char prog[sizeof("docker-credential-") + HELPER_NAME_MAX];
    char *argv[3];
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    bool fa_ok = false, overflow = false;
    char *buf = NULL;
    size_t len = 0;
    pid_t pid = -1;
    int status = 0, rc, ret = 0;

    if (helper == NULL || !helper_name_ok(helper))
        return csi_error_set(err, CS_EINVAL,
                             "docker config: credential helper name \"%.100s\" is not "
                             "[A-Za-z0-9._-]+",
                             helper ? helper : "");
    if (server_key == NULL || !*server_key)
        return csi_error_set(err, CS_EINVAL, "docker-credential-%s: no server key", helper);
    snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
    argv[0] = prog;
    argv[1] = (char *)"get";
    argv[2] = NULL;

    buf = malloc(CSI_CREDHELPER_MAX_OUTPUT + 1);
    if (buf == NULL)
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
    csi_log(CS_LOG_DEBUG, "asking %s for %s", prog, server_key);
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

    /* the key is short (a host name): it fits the pipe buffer, no deadlock with reading */
    rc = write_key(in_pipe[1], server_key, strlen(server_key));
    close(in_pipe[1]);
    in_pipe[1] = -1;
    if (rc < 0) {
        ret = csi_error_errno(err, -rc, "%s: writing the server key", prog);
        goto out;
    }
    for (;;) {
        char drain[4096];
        ssize_t n;

        if (len < CSI_CREDHELPER_MAX_OUTPUT)
            n = read(out_pipe[0], buf + len, CSI_CREDHELPER_MAX_OUTPUT - len);
        else
            n = read(out_pipe[0], drain, sizeof(drain));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ret = csi_error_errno(err, errno, "%s: reading its answer", prog);
            goto out;
        }
        if (n == 0)
            break;
        if (len < CSI_CREDHELPER_MAX_OUTPUT) {
            len += (size_t)n;
        } else {
            OPENSSL_cleanse(drain, (size_t)n);
            overflow = true;
        }
    }
    buf[len] = '\0';

out:
    if (pid > 0) {
        if (ret < 0)
            kill(pid, SIGTERM);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (ret == 0) {
        char line[256];

        first_line(line, sizeof(line), buf, len);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            if (overflow)
                ret = csi_error_set(err, CS_ELIMIT, "%s get: answer over %u bytes", prog,
                                    CSI_CREDHELPER_MAX_OUTPUT);
            else
                ret = parse_answer(out, helper, buf, len, err);
        } else if (memmem(buf, len, NOT_FOUND_TEXT, strlen(NOT_FOUND_TEXT)) != NULL) {
            csi_log(CS_LOG_DEBUG, "%s has no credentials for %s", prog, server_key);
        } else if (WIFEXITED(status)) {
            ret = csi_error_set(err, CS_EAUTH, "%s get for %s failed (exit status %d)%s%s", prog,
                                server_key, WEXITSTATUS(status), *line ? ": " : "", line);
        } else {
            ret = csi_error_set(err, CS_EAUTH, "%s get for %s was killed by signal %d%s%s",
                                prog, server_key, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                                *line ? ": " : "", line);
        }
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (in_pipe[i] >= 0)
            close(in_pipe[i]);
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
    }
    OPENSSL_cleanse(buf, CSI_CREDHELPER_MAX_OUTPUT + 1);
    free(buf);
    return ret;
}
