/* Sends rt.update_network to a running sandbox daemon (tests/e2e/net_cni.sh):
 *
 *   net_update ROOT SANDBOX_ID [ID]
 *
 * Prints "ok" or the error, exits 0 / 1. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "actors/client.h"
#include "actors/runtime_actor.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: net_update ROOT SANDBOX_ID [ID]\n");
        return 2;
    }
    char ep[PATH_MAX + 32];
    snprintf(ep, sizeof ep, "ipc://%s/%s/bus.sock", argv[1], argv[2]);
    bus_client_t *cli = NULL;
    err_t err = ERR_INIT;
    if (bus_client_new(ep, "net-update", &cli, &err) < 0) {
        fprintf(stderr, "net_update: connect %s: %s\n", ep, err_str(&err));
        return 1;
    }
    msg_t *m = msg_new(MSG_RT_UPDATE_NETWORK), *r = NULL;
    msg_set_str(&((msg_rt_update_network_t *)m->body)->id, argc > 3 ? argv[3] : argv[2]);
    int rc = bus_client_call(cli, RT_ACTOR_NAME, &m, 120000, &r, &err);
    if (rc < 0) {
        fprintf(stderr, "net_update: %s\n", err_str(&err));
    } else if (r->status) {
        fprintf(stderr, "net_update: %s\n", r->status_text ? r->status_text : "failed");
        rc = -1;
    } else {
        printf("ok\n");
    }
    msg_destroy(&r);
    bus_client_destroy(&cli);
    return rc < 0 ? 1 : 0;
}
