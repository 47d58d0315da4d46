/* res_share_probe: drives resources/share for tests/e2e/res_share.sh.
 *
 *   res_share_probe add <sandbox dir> <cid> <bundle>   set up the share (if
 *       needed) and share the container from <bundle>/config.json; prints
 *       the guest-side mounts, one per line:
 *         rootfs <guest path> ro|rw
 *         mount <n> <destination> <type> <source> <options,...>
 *   res_share_probe remove <sandbox dir> <cid>
 *   res_share_probe teardown <sandbox dir>
 *
 * Exit 0 on success, 1 with the error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/spec.h"
#include "resources/share.h"

static int fail(err_t *err)
{
    fprintf(stderr, "res_share_probe: %s\n", err_str(err));
    err_clear(err);
    return 1;
}

int main(int argc, char **argv)
{
    err_t err = ERR_INIT;
    if (argc == 5 && strcmp(argv[1], "add") == 0) {
        char cfg[4096];
        snprintf(cfg, sizeof cfg, "%s/config.json", argv[4]);
        oci_spec_t *spec = NULL;
        if (oci_spec_load(cfg, &spec, &err) < 0)
            return fail(&err);
        if (res_share_setup(argv[2], NULL, &err) < 0) {
            oci_spec_destroy(&spec);
            return fail(&err);
        }
        res_container_share_t *cs = NULL;
        if (res_share_add_container(argv[2], argv[3], spec, argv[4], &cs, &err) < 0) {
            oci_spec_destroy(&spec);
            return fail(&err);
        }
        printf("rootfs %s %s\n", cs->rootfs, cs->rootfs_readonly ? "ro" : "rw");
        for (size_t i = 0; i < cs->n_mounts; i++) {
            const oci_mount_t *m = &cs->mounts[i];
            printf("mount %zu %s %s %s ", i, m->destination, m->type ? m->type : "-",
                   m->source ? m->source : "-");
            for (size_t k = 0; k < m->n_options; k++)
                printf("%s%s", k ? "," : "", m->options[k]);
            printf("\n");
        }
        res_container_share_free(&cs);
        oci_spec_destroy(&spec);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "remove") == 0)
        return res_share_remove_container(argv[2], argv[3], &err) < 0 ? fail(&err) : 0;
    if (argc == 3 && strcmp(argv[1], "teardown") == 0)
        return res_share_teardown(argv[2], &err) < 0 ? fail(&err) : 0;
    fprintf(stderr, "usage: res_share_probe add SBDIR CID BUNDLE | remove SBDIR CID | "
                    "teardown SBDIR\n");
    return 2;
}
