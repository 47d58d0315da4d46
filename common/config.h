/* config: the husk configuration file (see docs/configuration.md).
 *
 * ini-like: `[section]` headers, `key = value` lines, `#` or `;` comments
 * on their own line, blank lines ignored, values taken verbatim after
 * trimming (optional surrounding double quotes removed).  Unknown sections
 * or keys, duplicate keys and invalid values are errors naming file:line
 * and the key.
 *
 * Resolution (cfg_load): defaults, then one file -- the explicit path
 * (--config), else $HUSK_CONFIG, else /etc/husk/husk.conf when it exists --
 * then environment overrides ($HUSK_HYPERVISOR=qemu|local). */
#ifndef HUSK_CONFIG_H
#define HUSK_CONFIG_H

#include <stdbool.h>

#include "common/err.h"

#define CFG_DEFAULT_PATH "/etc/husk/husk.conf"

/* The configuration.  Strings are owned by the struct (NULL when unset). */
typedef struct cfg {
    char *source; /* file that was loaded, NULL: defaults only */
    /* [runtime] */
    char *runtime_root; /* root = /run/husk */
    int log_level;      /* log_level = info (enum log_level) */
    char *backend;      /* hypervisor = qemu | local */
    /* [hypervisor] */
    char *kernel;        /* kernel = <found next to the binary or installed> */
    char *initrd;        /* initrd = idem */
    char *kernel_params; /* kernel_params = "" (appended to husk's own) */
    unsigned vcpus;      /* vcpus = 1 */
    unsigned memory_mib; /* memory_mib = 512 */
    bool debug_console;  /* debug_console = false */
    /* [qemu] */
    char *qemu_binary;  /* binary = qemu-system-x86_64 (host arch) */
    char *machine;      /* machine = q35 (x86_64: q35|pc|microvm; aarch64: virt) */
    char *accel;        /* accel = auto | kvm | tcg */
    unsigned fs_slots;  /* fs_slots = 4 (hot-pluggable 9p shares) */
    unsigned pci_slots; /* pci_slots = 4 (q35 hotplug root ports) */
} cfg_t;

/* Where guest images are looked for, in order: <exe dir>/../guest/, then
 * these install directories. */
#define CFG_GUEST_DIRS                                                                             \
    {                                                                                              \
        "/usr/local/share/husk/guest", "/usr/share/husk/guest", NULL                               \
    }

/* Full resolution as described above.  explicit_path may be NULL.  Caller
 * owns *out and must cfg_destroy() it. */
int cfg_load(const char *explicit_path, cfg_t **out, err_t *err);

/* Defaults only (guest images looked up from exe_path, or /proc/self/exe
 * when NULL).  Caller owns the result; NULL on OOM. */
cfg_t *cfg_new_defaults(const char *exe_path);

/* Parses `text` into cfg (keys present override); `name` is used in error
 * messages as the file name. */
int cfg_parse_string(cfg_t *cfg, const char *text, const char *name, err_t *err);
/* Reads and parses a file; a missing file is ENOENT. */
int cfg_parse_file(cfg_t *cfg, const char *path, err_t *err);
/* Applies $HUSK_HYPERVISOR. */
int cfg_apply_env(cfg_t *cfg, err_t *err);

/* Finds `name` (e.g. "vmlinux") in <dir of exe_path>/../guest/ then in
 * dirs (NULL-terminated).  Returns a malloc'ed path or NULL. */
char *cfg_find_guest_file(const char *exe_path, const char *const *dirs, const char *name);

void cfg_destroy(cfg_t **cfg_p);

#endif
