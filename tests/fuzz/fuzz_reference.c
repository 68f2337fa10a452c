/* libFuzzer target for the reference parser. Besides memory errors it checks the parser's
 * promises: failures are CS_EINVAL with a one-line message, and the full string of any
 * parsed reference parses back to itself. Any broken promise aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cachesync/reference.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned flag_sets[] = {
    0,
    CS_REF_FAMILIAR,
    CS_REF_NAME_ONLY,
    CS_REF_FAMILIAR | CS_REF_NAME_ONLY,
};

static void
check(int cond)
{
    if (!cond)
        abort();
}

static int
str_eq_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void
check_error(int ret, cs_error *err)
{
    check(ret == CS_EINVAL || ret == CS_ENOMEM);
    check(err != NULL && err->code == ret && err->message != NULL);
    check(strchr(err->message, '\n') == NULL && strchr(err->message, '\r') == NULL);
    cs_error_free(err);
}

/* The full string is canonical: parsing it again must give the same string back. */
static void
check_roundtrip(const cs_reference *ref, const char *full)
{
    cs_reference *again = NULL;
    cs_error *err = NULL;
    char *full2;

    check(cs_reference_parse(&again, full, &err) == 0);
    check(strcmp(again->domain, ref->domain) == 0 && strcmp(again->path, ref->path) == 0);
    check(str_eq_or_null(again->tag, ref->tag) && str_eq_or_null(again->digest, ref->digest));
    full2 = cs_reference_to_string(again, 0);
    check(full2 != NULL && strcmp(full2, full) == 0);
    free(full2);
    cs_reference_free(again);
}

/* Replacing the target with the current one keeps the name and selects the same content. */
static void
check_with_target(const cs_reference *ref)
{
    const char *target = cs_reference_target(ref);
    cs_reference *copy = NULL;
    cs_error *err = NULL;

    check(target != NULL);
    check(cs_reference_with_target(&copy, ref, target, &err) == 0);
    check(strcmp(copy->domain, ref->domain) == 0 && strcmp(copy->path, ref->path) == 0);
    check(strcmp(cs_reference_target(copy), target) == 0);
    check(strcmp(cs_reference_api_host(copy), cs_reference_api_host(ref)) == 0);
    cs_reference_free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_reference *ref = NULL;
    cs_error *err = NULL;
    char *input, *full = NULL;
    size_t i;
    int ret;

    input = malloc(size + 1);
    if (input == NULL)
        return 0;
    if (size > 0)
        memcpy(input, data, size);
    input[size] = '\0';

    ret = cs_reference_parse(&ref, input, &err);
    if (ret != 0) {
        check(ref == NULL);
        check_error(ret, err);
        goto out;
    }
    check(ref->domain != NULL && ref->path != NULL);
    check(ref->tag != NULL || ref->digest != NULL);
    check(cs_reference_api_host(ref) != NULL);

    for (i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        char *s = cs_reference_to_string(ref, flag_sets[i]);

        check(s != NULL);
        if (flag_sets[i] == 0)
            full = s;
        else
            free(s);
    }
    check_roundtrip(ref, full);
    check_with_target(ref);
out:
    free(full);
    cs_reference_free(ref);
    free(input);
    return 0;
}
