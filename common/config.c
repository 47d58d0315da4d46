/* config: parser and resolution of the husk configuration file. */
#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

#define MAX_FILE_SIZE (1 << 20)

enum kind { K_STR, K_PATH, K_UINT, K_BOOL, K_LEVEL, K_CHOICE };

struct key {
    const char *section;
    const char *name;
    enum kind kind;
    size_t off;
    unsigned min, max;          /* K_UINT */
    const char *const *choices; /* K_CHOICE */
};

static const char *const backends[] = {"qemu", "local", NULL};
static const char *const accels[] = {"auto", "kvm", "tcg", NULL};
static const char *const machines[] = {"q35", "pc", "microvm", "virt", NULL};

#define OFF(f) offsetof(cfg_t, f)
static const struct key keys[] = {
    {"runtime", "root", K_PATH, OFF(runtime_root), 0, 0, NULL},
    {"runtime", "log_level", K_LEVEL, OFF(log_level), 0, 0, NULL},
    {"runtime", "hypervisor", K_CHOICE, OFF(backend), 0, 0, backends},
    {"hypervisor", "kernel", K_PATH, OFF(kernel), 0, 0, NULL},
    {"hypervisor", "initrd", K_PATH, OFF(initrd), 0, 0, NULL},
    {"hypervisor", "kernel_params", K_STR, OFF(kernel_params), 0, 0, NULL},
    {"hypervisor", "vcpus", K_UINT, OFF(vcpus), 1, 256, NULL},
    {"hypervisor", "memory_mib", K_UINT, OFF(memory_mib), 64, 1 << 20, NULL},
    {"hypervisor", "debug_console", K_BOOL, OFF(debug_console), 0, 0, NULL},
    {"qemu", "binary", K_STR, OFF(qemu_binary), 0, 0, NULL},
    {"qemu", "machine", K_CHOICE, OFF(machine), 0, 0, machines},
    {"qemu", "accel", K_CHOICE, OFF(accel), 0, 0, accels},
    {"qemu", "fs_slots", K_UINT, OFF(fs_slots), 0, 32, NULL},
    {"qemu", "pci_slots", K_UINT, OFF(pci_slots), 0, 32, NULL},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

char *cfg_find_guest_file(const char *exe_path, const char *const *dirs, const char *name)
{
    char buf[PATH_MAX];
    if (exe_path) {
        const char *slash = strrchr(exe_path, '/');
        if (slash) {
            int n = snprintf(buf, sizeof(buf), "%.*s/../guest/%s", (int)(slash - exe_path),
                             exe_path, name);
            if (n > 0 && (size_t)n < sizeof(buf) && access(buf, R_OK) == 0) {
                char *real = realpath(buf, NULL);
                return real ? real : strdup(buf);
            }
        }
    }
    for (size_t i = 0; dirs && dirs[i]; i++) {
        int n = snprintf(buf, sizeof(buf), "%s/%s", dirs[i], name);
        if (n > 0 && (size_t)n < sizeof(buf) && access(buf, R_OK) == 0)
            return strdup(buf);
    }
    return NULL;
}

cfg_t *cfg_new_defaults(const char *exe_path)
{
    cfg_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    char self[PATH_MAX];
    if (!exe_path) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
            self[n] = '\0';
            exe_path = self;
        }
    }
    static const char *const dirs[] = CFG_GUEST_DIRS;
    c->runtime_root = strdup("/run/husk");
    c->log_level = LOG_INFO;
    c->backend = strdup("qemu");
    c->kernel = cfg_find_guest_file(exe_path, dirs, "vmlinux");
    c->initrd = cfg_find_guest_file(exe_path, dirs, "initrd.img");
    c->kernel_params = strdup("");
    c->vcpus = 1;
    c->memory_mib = 512;
#if defined(__aarch64__)
    c->qemu_binary = strdup("qemu-system-aarch64");
    c->machine = strdup("virt");
#else
    c->qemu_binary = strdup("qemu-system-x86_64");
    c->machine = strdup("q35");
#endif
    c->accel = strdup("auto");
    c->fs_slots = 4;
    c->pci_slots = 4;
    if (!c->runtime_root || !c->backend || !c->kernel_params || !c->qemu_binary || !c->machine ||
        !c->accel)
        cfg_destroy(&c);
    return c;
}

void cfg_destroy(cfg_t **cfg_p)
{
    if (!cfg_p || !*cfg_p)
        return;
    cfg_t *c = *cfg_p;
    free(c->source);
    free(c->runtime_root);
    free(c->backend);
    free(c->kernel);
    free(c->initrd);
    free(c->kernel_params);
    free(c->qemu_binary);
    free(c->machine);
    free(c->accel);
    free(c);
    *cfg_p = NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int set_string(char **field, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return -ENOMEM;
    free(*field);
    *field = d;
    return 0;
}

static int set_value(cfg_t *cfg, const struct key *k, const char *v, const char *where, err_t *err)
{
    void *field = (char *)cfg + k->off;
    switch (k->kind) {
    case K_STR:
        break;
    case K_PATH:
        if (*v && *v != '/')
            return err_make(err, EINVAL, "%s: key `%s`: `%s` is not an absolute path", where,
                            k->name, v);
        break;
    case K_UINT: {
        char *end;
        errno = 0;
        if (!isdigit((unsigned char)*v))
            return err_make(err, EINVAL, "%s: key `%s`: `%s` is not a number", where, k->name, v);
        unsigned long n = strtoul(v, &end, 10);
        if (errno || *end)
            return err_make(err, EINVAL, "%s: key `%s`: `%s` is not a number", where, k->name, v);
        if (n < k->min || n > k->max)
            return err_make(err, ERANGE, "%s: key `%s`: %lu is outside %u..%u", where, k->name, n,
                            k->min, k->max);
        *(unsigned *)field = (unsigned)n;
        return 0;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(bool *)field = true;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(bool *)field = false;
        else
            return err_make(err, EINVAL, "%s: key `%s`: `%s` is not a boolean (true|false)", where,
                            k->name, v);
        return 0;
    case K_LEVEL: {
        int l = log_level_parse(v);
        if (l < 0)
            return err_make(err, EINVAL,
                            "%s: key `%s`: `%s` is not a log level (debug|info|warn|error|off)",
                            where, k->name, v);
        *(int *)field = l;
        return 0;
    }
    case K_CHOICE: {
        for (size_t i = 0; k->choices[i]; i++)
            if (!strcmp(v, k->choices[i]))
                return set_string(field, v) < 0 ? err_make(err, ENOMEM, "out of memory") : 0;
        char list[128] = "";
        for (size_t i = 0; k->choices[i]; i++) {
            strncat(list, i ? "|" : "", sizeof(list) - strlen(list) - 1);
            strncat(list, k->choices[i], sizeof(list) - strlen(list) - 1);
        }
        return err_make(err, EINVAL, "%s: key `%s`: `%s` is not one of %s", where, k->name, v,
                        list);
    }
    }
    if (k->kind == K_PATH && !*v) {
        free(*(char **)field);
        *(char **)field = NULL;
        return 0;
    }
    return set_string(field, v) < 0 ? err_make(err, ENOMEM, "out of memory") : 0;
}

int cfg_parse_string(cfg_t *cfg, const char *text, const char *name, err_t *err)
{
    _cleanup_free_ char *copy = strdup(text);
    if (!copy)
        return err_make(err, ENOMEM, "out of memory");
    bool seen[N_KEYS] = {false};
    char section[64] = "";
    unsigned lineno = 0;
    char *p = copy; /* split by hand: strtok would skip empty lines */
    while (p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char where[512];
        snprintf(where, sizeof(where), "%s:%u", name, lineno);
        char *line = trim(p);
        p = nl ? nl + 1 : NULL;
        if (!*line || *line == '#' || *line == ';')
            continue;
        if (*line == '[') {
            char *end = strchr(line, ']');
            if (!end || end[1] != '\0')
                return err_make(err, EINVAL, "%s: malformed section header `%s`", where, line);
            *end = '\0';
            char *s = trim(line + 1);
            bool known = false;
            for (size_t i = 0; i < N_KEYS; i++)
                if (!strcmp(keys[i].section, s))
                    known = true;
            if (!known)
                return err_make(err, EINVAL, "%s: unknown section [%s]", where, s);
            snprintf(section, sizeof(section), "%s", s);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!eq)
            return err_make(err, EINVAL, "%s: expected `key = value`, got `%s`", where, line);
        *eq = '\0';
        char *key = trim(line);
        char *val = trim(eq + 1);
        size_t vn = strlen(val);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
            val[vn - 1] = '\0';
            val++;
        }
        if (!*section)
            return err_make(err, EINVAL, "%s: key `%s` outside any [section]", where, key);
        size_t i;
        for (i = 0; i < N_KEYS; i++)
            if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, key))
                break;
        if (i == N_KEYS)
            return err_make(err, EINVAL, "%s: unknown key `%s` in [%s]", where, key, section);
        if (seen[i])
            return err_make(err, EINVAL, "%s: key `%s` given twice in [%s]", where, key, section);
        seen[i] = true;
        int r = set_value(cfg, &keys[i], val, where, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int cfg_parse_file(cfg_t *cfg, const char *path, err_t *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return err_errno(err, "config %s", path);
    char *buf = malloc(MAX_FILE_SIZE + 1);
    if (!buf) {
        fclose(f);
        return err_make(err, ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, MAX_FILE_SIZE + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return err_make(err, EIO, "config %s: read error", path);
    }
    if (n > MAX_FILE_SIZE) {
        free(buf);
        return err_make(err, EFBIG, "config %s: larger than %d bytes", path, MAX_FILE_SIZE);
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        free(buf);
        return err_make(err, EINVAL, "config %s: contains a NUL byte", path);
    }
    int r = cfg_parse_string(cfg, buf, path, err);
    free(buf);
    if (r < 0)
        return r;
    return set_string(&cfg->source, path) < 0 ? err_make(err, ENOMEM, "out of memory") : 0;
}

int cfg_apply_env(cfg_t *cfg, err_t *err)
{
    const char *hv = getenv("HUSK_HYPERVISOR");
    if (hv && *hv) {
        if (strcmp(hv, "qemu") && strcmp(hv, "local"))
            return err_make(err, EINVAL, "HUSK_HYPERVISOR: `%s` is not one of qemu|local", hv);
        if (set_string(&cfg->backend, hv) < 0)
            return err_make(err, ENOMEM, "out of memory");
    }
    return 0;
}

int cfg_load(const char *explicit_path, cfg_t **out, err_t *err)
{
    cfg_t *c = cfg_new_defaults(NULL);
    if (!c)
        return err_make(err, ENOMEM, "out of memory");
    const char *path = explicit_path;
    bool required = true;
    if (!path || !*path)
        path = getenv("HUSK_CONFIG");
    if (!path || !*path) {
        path = CFG_DEFAULT_PATH;
        required = false;
    }
    struct stat st;
    int r = 0;
    if (required || stat(path, &st) == 0)
        r = cfg_parse_file(c, path, err);
    if (r >= 0)
        r = cfg_apply_env(c, err);
    if (r < 0) {
        cfg_destroy(&c);
        return r;
    }
    *out = c;
    return 0;
}
