/* test_files.h: small file helpers shared by the unit suites. */
#ifndef HUSK_TEST_FILES_H
#define HUSK_TEST_FILES_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file as a string ("" when it cannot be read).  Caller frees. */
static inline char *test_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, r, m);
    fclose(f);
    fclose(m);
    return buf;
}
#endif
