/* containerd-shim-husk-v2: the containerd shim v2 of husk (docs/shim.md).
 *
 *   containerd-shim-husk-v2 -namespace NS -address A -publish-binary P -id ID [-debug] start
 *   containerd-shim-husk-v2 -namespace NS -address A -publish-binary P -id ID -bundle B delete
 *   containerd-shim-husk-v2 -namespace NS -id ID -address A -socket S -sandbox G -bundle B
 *                                                  (the daemon `start` spawns; fd 3 listens) */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "services/shim.h"
#include "services/shim_cmd.h"

int main(int argc, char **argv)
{
    svc_shim_args_t args;
    err_t err = ERR_INIT;
    if (svc_shim_args_parse(argc, argv, &args, &err) < 0) {
        fprintf(stderr, "containerd-shim-husk-v2: %s\n", err_str(&err));
        err_clear(&err);
        return 2;
    }
    if (args.version) {
        printf("containerd-shim-husk-v2:\n  Version: %s\n  Revision: %s\n", HUSK_VERSION,
               HUSK_COMMIT);
        return 0;
    }
    if (args.action && !strcmp(args.action, "start")) {
        /* containerd reads stdout and stderr together as the address */
        log_setup(2, LOG_FMT_LOGFMT, LOG_OFF);
        return svc_shim_cmd_start(&args);
    }
    if (args.action && !strcmp(args.action, "delete")) {
        log_setup(2, LOG_FMT_LOGFMT, LOG_WARN);
        return svc_shim_cmd_delete(&args);
    }
    return svc_shim_cmd_serve(&args);
}
