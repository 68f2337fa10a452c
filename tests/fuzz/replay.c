/* Replays a libFuzzer target's corpus without libFuzzer, so every `make check` runs the
 * committed inputs (regressions included) under the normal build and its sanitizers.
 * The corpus directory is $FUZZ_CORPUS/<target name>, the target name being this program's
 * basename without the "replay_" prefix. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(int argc, char **argv)
{
    const char *root = getenv("FUZZ_CORPUS");
    const char *name = strrchr(argv[0], '/');
    char dir[4096], path[8192];
    struct dirent *de;
    DIR *d;
    int count = 0;

    name = name ? name + 1 : argv[0];
    if (strncmp(name, "replay_", 7) == 0)
        name += 7;
    if (strncmp(name, "lt-", 3) == 0)
        name += 3;
    snprintf(dir, sizeof(dir), "%s/%s", root ? root : "tests/fuzz/corpus", name);
    d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: no corpus at %s\n", dir);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        FILE *f;
        uint8_t *buf;
        long n;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc(n > 0 ? (size_t)n : 1);
        if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "replay: cannot read %s\n", path);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
        count++;
    }
    closedir(d);
    printf("%s: %d passed, 0 failed\n", name, count);
    return count > 0 ? 0 : 1;
}
