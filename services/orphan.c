/* orphan: see orphan.h. */
#include "services/orphan.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "hypervisors/hv.h"
#include "resources/cgroup_host.h"
#include "resources/net.h"
#include "resources/netlink.h"
#include "resources/resource_actor.h"
#include "resources/share.h"

static void kill_vmm(const persist_sandbox_t *s)
{
    if (s->vmm_pid <= 0 || !persist_pid_alive(s->vmm_pid, s->vmm_start))
        return;
    int fd = (int)syscall(SYS_pidfd_open, s->vmm_pid, 0);
    if (fd < 0)
        return;
    if (persist_pid_alive(s->vmm_pid, s->vmm_start)) { /* the pidfd holds this very process */
        log_warn("killing the orphaned VMM %d of sandbox %s", (int)s->vmm_pid, s->id);
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        struct pollfd p = {fd, POLLIN, 0};
        while (poll(&p, 1, 5000) < 0 && errno == EINTR)
            ;
    }
    close(fd);
}

static void release_taps(const persist_sandbox_t *s)
{
    if (!s->netns || !s->n_net_taps || access(s->netns, F_OK) < 0)
        return; /* no taps, or they went with their namespace */
    size_t n = s->n_net_taps < 16 ? s->n_net_taps : 16;
    const char *taps[16], *states[16];
    uint8_t macs[16][6];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (res_nl_mac_parse(s->net_taps[i].value, macs[k]) < 0)
            continue;
        taps[k] = s->net_taps[i].key;
        states[k] = NULL;
        for (size_t j = 0; j < s->n_net_tap_states; j++)
            if (!strcmp(s->net_tap_states[j].key, taps[k]))
                states[k] = s->net_tap_states[j].value;
        k++;
    }
    res_net_t *net = calloc(1, sizeof *net);
    err_t err = ERR_INIT;
    if (!net || res_net_scan(s->netns, net, &err) < 0 ||
        res_net_adopt(net, taps, (const uint8_t(*)[6])macs, states, k, &err) < 0 ||
        res_net_detach(net, &err) < 0)
        log_warn("release the taps of %s in %s: %s, ignoring", s->id, s->netns,
                 net ? err_str(&err) : "out of memory");
    err_clear(&err);
    free(net);
}

void svc_release_orphaned_sandbox(persist_store_t *store, const char *root, const char *sandbox_id)
{
    persist_sandbox_t *s = NULL;
    err_t err = ERR_INIT;
    if (persist_sandbox_load(store, sandbox_id, &s, &err) == 0) {
        kill_vmm(s);
        release_taps(s);
    }
    err_clear(&err);
    persist_sandbox_free(&s);
    char *dir = NULL;
    if (persist_sandbox_dir(store, sandbox_id, &dir, &err) == 0 && res_share_teardown(dir, &err) < 0)
        log_warn("tear down the share of %s: %s, ignoring", sandbox_id, err_str(&err));
    err_clear(&err);
    free(dir);
    res_cgroup_t *cg = NULL;
    char cgname[PERSIST_MAX_ID + 32]; /* as the resources actor names it */
    if (res_actor_cgroup_name(root, sandbox_id, cgname, sizeof cgname, &err) == 0 &&
        res_cgroup_open(NULL, cgname, &cg, &err) == 0 && res_cgroup_remove(cg, 1000, &err) < 0)
        log_warn("remove the cgroup of %s: %s, ignoring", sandbox_id, err_str(&err));
    err_clear(&err);
    res_cgroup_destroy(&cg);
    hv_local_cleanup(sandbox_id);
}
