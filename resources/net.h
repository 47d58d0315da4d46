/* resources/net: a CNI-prepared network namespace, brought into the VM.
 *
 * The caller (CNI through containerd's CRI, podman, a test) creates the
 * network namespace, puts interfaces in it (a veth, usually eth0) with
 * addresses, routes and neighbours, and names it in the spec:
 * linux.namespaces[{"type": "network", "path": "/run/netns/X"}].
 *
 * res_net_scan() reads that namespace through netlink: every Ethernet
 * interface except lo and our own taps (name, MAC, MTU, IPv4/IPv6
 * addresses but the link-local ones), the main table's routes but those
 * the kernel made itself (proto kernel) and IPv6 link-local/multicast
 * ones, and the permanent neighbours.
 *
 * res_net_attach() implements Kata's tc-filter model for each interface
 * i: a persistent tap `tap<i>_husk` in the same namespace, same MTU, up;
 * an ingress qdisc on the interface and on the tap; on each a u32 filter
 * (matches everything, priority RES_NET_PRIO) with the action "mirred
 * egress redirect" to the other one.  Frames from the CNI side reach the
 * tap and so the VM's virtio-net device (same MAC as the veth); frames
 * from the VM leave through the veth.  The veth keeps its addresses (the
 * namespace's own stack no longer receives anything on it).
 * Every step is journaled in the res_net_t; on a failure the steps done
 * are undone in reverse before returning, and res_net_detach() undoes them
 * all, so the namespace ends exactly as found: an ingress qdisc that was
 * already there is kept (only our filter goes), one we added is removed
 * (with its filters), the tap is deleted.
 *
 * The namespace is entered on a short-lived thread (setns(CLONE_NEWNET)
 * affects only the calling thread); the caller's thread never changes
 * namespace.  Each call takes a few milliseconds.
 *
 * QEMU joins the namespace too (hv_config.netns; as Kata runs its VMM in
 * the pod's netns) and opens the tap by name (`-netdev tap,ifname=`), at
 * boot or hot-plugged.  The local backend needs none of this: its agent
 * runs in the namespace itself.
 *
 * Guest side: res_net_iface_json() / res_net_routes_json() /
 * res_net_neighs_json() produce the bodies of agent.update_interface,
 * agent.update_routes and agent.add_arp_neighbors (docs/networking.md). */
#ifndef HUSK_RES_NET_H
#define HUSK_RES_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct oci_spec;

#define RES_NET_MAX_IFS    8
#define RES_NET_MAX_ADDRS  16
#define RES_NET_MAX_ROUTES 64
#define RES_NET_MAX_NEIGHS 64
#define RES_NET_PRIO       0xc0de /* tc filter priority of our redirects */
#define RES_NET_TAP_SUFFIX "_husk"
#define RES_NET_IFNAMSIZ   16 /* IFNAMSIZ */

typedef struct res_net_addr {
    int family; /* AF_INET / AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} res_net_addr_t;

typedef struct res_net_if {
    char name[RES_NET_IFNAMSIZ];
    int index;
    char kind[16]; /* "veth", "macvlan", ... ("" for a plain device) */
    uint8_t mac[6];
    unsigned mtu;
    unsigned txqlen; /* restored at detach: an ingress qdisc sets 0 to 1000 */
    bool up;
    res_net_addr_t addrs[RES_NET_MAX_ADDRS];
    unsigned n_addrs;
    /* attach state */
    char tap[RES_NET_IFNAMSIZ];
    int tap_index;
    bool tap_made;    /* we created the tap */
    bool qdisc_made;  /* we added the ingress qdisc on the interface */
    bool filter_made; /* our redirect interface -> tap is in place */
    bool attached;
} res_net_if_t;

typedef struct res_net_route {
    int family;
    uint8_t dst[16];
    unsigned dst_len; /* 0: default route */
    uint8_t gw[16];
    bool has_gw;
    uint8_t src[16];
    bool has_src;
    char dev[RES_NET_IFNAMSIZ]; /* "" when the route has no device */
    unsigned scope;             /* RT_SCOPE_UNIVERSE or RT_SCOPE_LINK */
    unsigned metric;
} res_net_route_t;

typedef struct res_net_neigh {
    int family;
    uint8_t ip[16];
    uint8_t mac[6];
    char dev[RES_NET_IFNAMSIZ];
    unsigned state;
} res_net_neigh_t;

typedef struct res_net {
    char netns[4096];
    /* The namespace, held open from the first attach to the detach of the
     * last interface: the caller may unmount its path first (podman tears
     * the network down before the runtime's delete), and the taps must
     * still go (the namespace may outlive us: a pod, another holder). */
    bool held;
    int held_fd;
    res_net_if_t ifs[RES_NET_MAX_IFS];
    unsigned n_ifs;
    res_net_route_t routes[RES_NET_MAX_ROUTES];
    unsigned n_routes;
    res_net_neigh_t neighs[RES_NET_MAX_NEIGHS];
    unsigned n_neighs;
} res_net_t;

/* The network namespace path of the spec: 1 and *path borrowed from spec
 * when linux.namespaces has type "network" with a path; 0 otherwise (no
 * network namespace: the host's / the VM's; or a new empty one). */
int res_net_netns_of_spec(const struct oci_spec *spec, const char **path);

/* Runs fn(arg) on a fresh thread that joined the network namespace at
 * netns_path; returns what fn returned (err filled by fn or here). */
int res_net_in_netns(const char *netns_path, int (*fn)(void *arg, err_t *err), void *arg,
                     err_t *err);

/* Reads the namespace (see above) into *n (zeroed first; n->netns set). */
int res_net_scan(const char *netns_path, res_net_t *n, err_t *err);
/* The same in the calling thread's own namespace (the guest agent). */
int res_net_scan_current(res_net_t *n, err_t *err);
/* Attaches every interface of n not yet attached (taps tap<i>_husk with i
 * its position).  All or nothing: on failure what this call did is undone. */
int res_net_attach(res_net_t *n, err_t *err);
/* Undoes what attach did for every attached interface; goes on after a
 * failure and reports the first; closes the held namespace in every case.
 * It works through the held namespace even when its path was unmounted;
 * a namespace never held whose path is gone counts as clean. */
int res_net_detach(res_net_t *n, err_t *err);
/* Undoes interface i only and drops it from n. */
int res_net_detach_one(res_net_t *n, unsigned i, err_t *err);

/* What undoing interface f's attach needs besides its tap and MAC: whether
 * the ingress qdisc on it is ours and the queue length it had before:
 * "qdisc=<0|1>,txqlen=<n>" (RES_NET_STATE_MAX bytes with the NUL). */
#define RES_NET_STATE_MAX 40
void res_net_attach_state(const res_net_if_t *f, char out[RES_NET_STATE_MAX]);

/* Takes over the taps an earlier process attached in n's namespace (n was
 * scanned first): taps[k] (tap<N>_husk) served the interface with MAC
 * macs[k], attached as states[k] said (res_net_attach_state; states NULL
 * or an entry NULL: unknown, and an ingress qdisc on the interface then
 * stays, since it cannot be told whether it was ours).  Nothing is
 * created; afterwards res_net_detach() removes those taps and their
 * redirects.  A tap that is gone is skipped; one whose interface is gone
 * is kept alone (the detach deletes it).  A state that does not parse is
 * refused (EINVAL, naming it).  Returns the number of taps adopted. */
int res_net_adopt(res_net_t *n, const char *const *taps, const uint8_t (*macs)[6],
                  const char *const *states, size_t count, err_t *err);

/* JSON (jansson text, caller frees) for the agent messages. */
char *res_net_iface_json(const res_net_if_t *ifc);
char *res_net_routes_json(const res_net_t *n);
char *res_net_neighs_json(const res_net_t *n);

/* Parsing of dumped netlink messages (exposed for the unit tests).  Each
 * returns 1 when the message was taken into n, 0 when skipped, < 0 when
 * malformed. */
struct nlmsghdr;
int res_net_parse_link(const struct nlmsghdr *nlh, res_net_t *n);
int res_net_parse_addr(const struct nlmsghdr *nlh, res_net_t *n);
int res_net_parse_route(const struct nlmsghdr *nlh, res_net_t *n);
int res_net_parse_neigh(const struct nlmsghdr *nlh, res_net_t *n);

#endif
