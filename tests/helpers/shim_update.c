/* Sends containerd.task.v2.Task/Update to a shim, as containerd does, with
 * annotations and no resources (tests/e2e/shim_containerd.sh):
 *
 *   shim_update ADDRESS ID [KEY=VALUE...]
 *
 * Prints "ok" or "error <ttrpc code>: <message>"; exits 0 / 1 (2: usage or
 * no connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "services/ttrpc.h"
#include "services/ttrpc_task.h"

#define MAX_ANN 8

int main(int argc, char **argv)
{
    if (argc < 3 || argc - 3 > MAX_ANN) {
        fprintf(stderr, "usage: shim_update ADDRESS ID [KEY=VALUE...] (at most %d)\n", MAX_ANN);
        return 2;
    }
    Containerd__Task__V2__UpdateTaskRequest__AnnotationsEntry ents[MAX_ANN], *ptrs[MAX_ANN];
    Containerd__Task__V2__UpdateTaskRequest req = CONTAINERD__TASK__V2__UPDATE_TASK_REQUEST__INIT;
    req.id = argv[2];
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "shim_update: %s: want KEY=VALUE\n", argv[i]);
            return 2;
        }
        *eq = 0;
        Containerd__Task__V2__UpdateTaskRequest__AnnotationsEntry e =
            CONTAINERD__TASK__V2__UPDATE_TASK_REQUEST__ANNOTATIONS_ENTRY__INIT;
        e.key = argv[i];
        e.value = eq + 1;
        ents[i - 3] = e;
        ptrs[i - 3] = &ents[i - 3];
    }
    req.n_annotations = (size_t)(argc - 3);
    req.annotations = ptrs;

    struct event_base *base = event_base_new();
    ttrpc_client_t *cl = NULL;
    err_t err = ERR_INIT;
    uint8_t *buf = NULL;
    size_t len = 0;
    ttrpc_result_t res = TTRPC_RESULT_INIT;
    ttrpc_call_opts_t opts = {.timeout_ns = 300 * 1000000000LL};
    int rc = 2;
    if (!base || ttrpc_client_connect(base, argv[1], &cl, &err) < 0 ||
        svc_ttrpc_pack(&req.base, &buf, &len, &err) < 0 ||
        ttrpc_client_call_sync(cl, SVC_TTRPC_TASK_SERVICE, "Update", buf, len, &opts, &res, &err) <
            0) {
        fprintf(stderr, "shim_update: %s: %s\n", argv[1], err_str(&err));
    } else if (res.code) {
        printf("error %d: %s\n", res.code, res.message);
        rc = 1;
    } else {
        printf("ok\n");
        rc = 0;
    }
    ttrpc_result_clear(&res);
    free(buf);
    err_clear(&err);
    ttrpc_client_destroy(&cl);
    if (base)
        event_base_free(base);
    return rc;
}
