/* resources/net: see net.h. */
#include "resources/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "oci/spec.h"
#include "resources/netlink.h"

int res_net_netns_of_spec(const struct oci_spec *spec, const char **path)
{
    if (!spec || !spec->lnx)
        return 0;
    for (size_t i = 0; i < spec->lnx->n_namespaces; i++) {
        const oci_namespace_t *ns = &spec->lnx->namespaces[i];
        if (ns->type == OCI_NS_NETWORK && ns->path && ns->path[0]) {
            *path = ns->path;
            return 1;
        }
    }
    return 0;
}

/* ---- running in the namespace ------------------------------------------------ */

struct in_ns {
    const char *path;
    int fd; /* the namespace when >= 0, else path is opened */
    int (*fn)(void *, err_t *);
    void *arg;
    err_t err;
    int r;
};

static void *in_ns_thread(void *p)
{
    struct in_ns *t = p;
    int fd = t->fd >= 0 ? t->fd : open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->r = err_errno(&t->err, "open network namespace %s", t->path);
        return NULL;
    }
    int r = setns(fd, CLONE_NEWNET);
    if (r < 0)
        t->r = err_errno(&t->err, "join network namespace %s", t->path);
    if (fd != t->fd)
        close(fd);
    if (r < 0)
        return NULL;
    t->r = t->fn(t->arg, &t->err);
    return NULL;
}

static int in_netns(const char *netns_path, int fd, int (*fn)(void *arg, err_t *err), void *arg,
                    err_t *err)
{
    struct in_ns t = {.path = netns_path, .fd = fd, .fn = fn, .arg = arg, .err = ERR_INIT};
    pthread_t th;
    int e = pthread_create(&th, NULL, in_ns_thread, &t);
    if (e) {
        errno = e;
        return err_errno(err, "network namespace %s: start a thread", netns_path);
    }
    pthread_join(th, NULL);
    if (t.r < 0)
        err_move(err, &t.err);
    err_clear(&t.err);
    return t.r;
}

int res_net_in_netns(const char *netns_path, int (*fn)(void *arg, err_t *err), void *arg,
                     err_t *err)
{
    return in_netns(netns_path, -1, fn, arg, err);
}

/* ---- parsing ---------------------------------------------------------------- */

static int attr_cb(const struct nlattr *a, void *data)
{
    const struct nlattr **tb = data;
    int type = mnl_attr_get_type(a);
    if (mnl_attr_type_valid(a, IFLA_MAX > RTA_MAX ? IFLA_MAX : RTA_MAX) < 0)
        return MNL_CB_OK; /* newer than us: skip */
    tb[type] = a;
    return MNL_CB_OK;
}

#define TB_MAX 128

static res_net_if_t *if_by_index(res_net_t *n, int index)
{
    for (unsigned i = 0; i < n->n_ifs; i++)
        if (n->ifs[i].index == index)
            return &n->ifs[i];
    return NULL;
}

int res_net_parse_link(const struct nlmsghdr *nlh, res_net_t *n)
{
    if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
        return -1;
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_MAX] = {0};
    if (mnl_attr_parse(nlh, sizeof *ifi, attr_cb, tb) < 0)
        return -1;
    if (ifi->ifi_type != ARPHRD_ETHER || (ifi->ifi_flags & IFF_LOOPBACK))
        return 0;
    if (!tb[IFLA_IFNAME] || mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) < 0)
        return -1;
    const char *name = mnl_attr_get_str(tb[IFLA_IFNAME]);
    size_t nl = strlen(name), sl = strlen(RES_NET_TAP_SUFFIX);
    if (nl >= IFNAMSIZ || (nl > sl && !strcmp(name + nl - sl, RES_NET_TAP_SUFFIX)))
        return 0; /* ours (or bogus) */
    char kind[16] = "";
    if (tb[IFLA_LINKINFO]) {
        const struct nlattr *li[IFLA_INFO_MAX + 1] = {0};
        const struct nlattr *a;
        mnl_attr_for_each_nested(a, tb[IFLA_LINKINFO])
        {
            if (mnl_attr_get_type(a) <= IFLA_INFO_MAX)
                li[mnl_attr_get_type(a)] = a;
        }
        if (li[IFLA_INFO_KIND] && mnl_attr_validate(li[IFLA_INFO_KIND], MNL_TYPE_STRING) == 0)
            snprintf(kind, sizeof kind, "%.*s", (int)mnl_attr_get_payload_len(li[IFLA_INFO_KIND]),
                     (const char *)mnl_attr_get_payload(li[IFLA_INFO_KIND]));
    }
    if (!strcmp(kind, "tun") || !strcmp(kind, "bridge") || !strcmp(kind, "ifb"))
        return 0;
    if (!tb[IFLA_ADDRESS] || mnl_attr_get_payload_len(tb[IFLA_ADDRESS]) != 6)
        return 0;
    if (n->n_ifs >= RES_NET_MAX_IFS)
        return 0;
    res_net_if_t *f = &n->ifs[n->n_ifs];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    f->index = ifi->ifi_index;
    memcpy(f->mac, mnl_attr_get_payload(tb[IFLA_ADDRESS]), 6);
    f->mtu = tb[IFLA_MTU] && mnl_attr_get_payload_len(tb[IFLA_MTU]) == 4
                 ? mnl_attr_get_u32(tb[IFLA_MTU])
                 : 1500;
    f->txqlen = tb[IFLA_TXQLEN] && mnl_attr_get_payload_len(tb[IFLA_TXQLEN]) == 4
                    ? mnl_attr_get_u32(tb[IFLA_TXQLEN])
                    : 1000;
    f->up = (ifi->ifi_flags & IFF_UP) != 0;
    n->n_ifs++;
    return 1;
}

static int addr_len_ok(int family, const struct nlattr *a)
{
    return a && mnl_attr_get_payload_len(a) == (family == AF_INET6 ? 16u : 4u);
}

int res_net_parse_addr(const struct nlmsghdr *nlh, res_net_t *n)
{
    if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg))
        return -1;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_MAX] = {0};
    if (mnl_attr_parse(nlh, sizeof *ifa, attr_cb, tb) < 0)
        return -1;
    if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
        return 0;
    res_net_if_t *f = if_by_index(n, (int)ifa->ifa_index);
    if (!f)
        return 0;
    if (ifa->ifa_scope == RT_SCOPE_LINK || ifa->ifa_scope == RT_SCOPE_HOST)
        return 0; /* link-local: the guest makes its own */
    const struct nlattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
    if (!addr_len_ok(ifa->ifa_family, a))
        return -1;
    if (f->n_addrs >= RES_NET_MAX_ADDRS)
        return 0;
    res_net_addr_t *ad = &f->addrs[f->n_addrs++];
    memset(ad, 0, sizeof *ad);
    ad->family = ifa->ifa_family;
    ad->prefix = ifa->ifa_prefixlen;
    memcpy(ad->addr, mnl_attr_get_payload(a), mnl_attr_get_payload_len(a));
    return 1;
}

int res_net_parse_route(const struct nlmsghdr *nlh, res_net_t *n)
{
    if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct rtmsg))
        return -1;
    const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_MAX] = {0};
    if (mnl_attr_parse(nlh, sizeof *rt, attr_cb, tb) < 0)
        return -1;
    int fam = rt->rtm_family;
    if (fam != AF_INET && fam != AF_INET6)
        return 0;
    unsigned table = rt->rtm_table;
    if (tb[RTA_TABLE] && mnl_attr_get_payload_len(tb[RTA_TABLE]) == 4)
        table = mnl_attr_get_u32(tb[RTA_TABLE]);
    if (table != RT_TABLE_MAIN || rt->rtm_type != RTN_UNICAST || rt->rtm_protocol == RTPROT_KERNEL)
        return 0;
    if (rt->rtm_dst_len > (fam == AF_INET6 ? 128 : 32))
        return -1;
    if (tb[RTA_MULTIPATH])
        return 0; /* not carried (CNI plugins do not make them) */
    res_net_route_t r = {.family = fam, .dst_len = rt->rtm_dst_len, .scope = rt->rtm_scope};
    if (tb[RTA_DST]) {
        if (!addr_len_ok(fam, tb[RTA_DST]))
            return -1;
        memcpy(r.dst, mnl_attr_get_payload(tb[RTA_DST]), mnl_attr_get_payload_len(tb[RTA_DST]));
    }
    if (fam == AF_INET6 && r.dst_len >= 8 &&
        (r.dst[0] == 0xff || (r.dst[0] == 0xfe && (r.dst[1] & 0xc0) == 0x80)))
        return 0; /* multicast, link-local */
    if (tb[RTA_GATEWAY]) {
        if (!addr_len_ok(fam, tb[RTA_GATEWAY]))
            return -1;
        memcpy(r.gw, mnl_attr_get_payload(tb[RTA_GATEWAY]),
               mnl_attr_get_payload_len(tb[RTA_GATEWAY]));
        r.has_gw = true;
    }
    if (tb[RTA_PREFSRC]) {
        if (!addr_len_ok(fam, tb[RTA_PREFSRC]))
            return -1;
        memcpy(r.src, mnl_attr_get_payload(tb[RTA_PREFSRC]),
               mnl_attr_get_payload_len(tb[RTA_PREFSRC]));
        r.has_src = true;
    }
    if (tb[RTA_PRIORITY] && mnl_attr_get_payload_len(tb[RTA_PRIORITY]) == 4)
        r.metric = mnl_attr_get_u32(tb[RTA_PRIORITY]);
    if (tb[RTA_OIF] && mnl_attr_get_payload_len(tb[RTA_OIF]) == 4) {
        res_net_if_t *f = if_by_index(n, (int)mnl_attr_get_u32(tb[RTA_OIF]));
        if (!f)
            return 0; /* through lo or a device we do not carry */
        memcpy(r.dev, f->name, sizeof r.dev);
    }
    if (n->n_routes >= RES_NET_MAX_ROUTES)
        return 0;
    n->routes[n->n_routes++] = r;
    return 1;
}

int res_net_parse_neigh(const struct nlmsghdr *nlh, res_net_t *n)
{
    if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
        return -1;
    const struct ndmsg *nd = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_MAX] = {0};
    if (mnl_attr_parse(nlh, sizeof *nd, attr_cb, tb) < 0)
        return -1;
    if ((nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6) ||
        !(nd->ndm_state & NUD_PERMANENT))
        return 0;
    res_net_if_t *f = if_by_index(n, nd->ndm_ifindex);
    if (!f || !addr_len_ok(nd->ndm_family, tb[NDA_DST]) || !tb[NDA_LLADDR] ||
        mnl_attr_get_payload_len(tb[NDA_LLADDR]) != 6)
        return 0;
    if (n->n_neighs >= RES_NET_MAX_NEIGHS)
        return 0;
    res_net_neigh_t *e = &n->neighs[n->n_neighs++];
    memset(e, 0, sizeof *e);
    e->family = nd->ndm_family;
    e->state = nd->ndm_state;
    memcpy(e->ip, mnl_attr_get_payload(tb[NDA_DST]), mnl_attr_get_payload_len(tb[NDA_DST]));
    memcpy(e->mac, mnl_attr_get_payload(tb[NDA_LLADDR]), 6);
    memcpy(e->dev, f->name, sizeof e->dev);
    return 1;
}

/* ---- scan ------------------------------------------------------------------ */

struct parse_ctx {
    res_net_t *n;
    int (*fn)(const struct nlmsghdr *, res_net_t *);
};

static int parse_cb(const struct nlmsghdr *nlh, void *data)
{
    struct parse_ctx *c = data;
    return c->fn(nlh, c->n) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
}

static int scan_in_ns(void *arg, err_t *err)
{
    res_net_t *n = arg;
    res_nl_t *nl = NULL;
    int r = res_nl_open(&nl, err);
    if (r < 0)
        return r;
    char buf[RES_NL_BUF];
    struct {
        uint16_t type;
        const char *what;
        int (*fn)(const struct nlmsghdr *, res_net_t *);
    } steps[] = {
        {RTM_GETLINK, "list links", res_net_parse_link},
        {RTM_GETADDR, "list addresses", res_net_parse_addr},
        {RTM_GETROUTE, "list routes", res_net_parse_route},
        {RTM_GETNEIGH, "list neighbours", res_net_parse_neigh},
    };
    for (size_t i = 0; i < sizeof steps / sizeof *steps && r == 0; i++) {
        struct parse_ctx c = {n, steps[i].fn};
        r = res_nl_talk(nl, res_nl_dump(buf, steps[i].type, AF_UNSPEC), parse_cb, &c, steps[i].what,
                        err);
    }
    res_nl_close(&nl);
    return r;
}

int res_net_scan_current(res_net_t *n, err_t *err)
{
    memset(n, 0, sizeof *n);
    return scan_in_ns(n, err);
}

int res_net_scan(const char *netns_path, res_net_t *n, err_t *err)
{
    memset(n, 0, sizeof *n);
    if (strlen(netns_path) >= sizeof n->netns)
        return err_make(err, ENAMETOOLONG, "network namespace path too long");
    snprintf(n->netns, sizeof n->netns, "%s", netns_path);
    int r = res_net_in_netns(netns_path, scan_in_ns, n, err);
    if (r < 0)
        return err_wrap(err, "scan network namespace %s", netns_path);
    return 0;
}

/* ---- attach / detach ----------------------------------------------------------- */

/* Fault injection for the tests: HUSK_NET_FAIL_AT=N fails the N-th
 * mutating step (1-based) of an attach with EIO. */
static int fault_step(int *step, const char *what, err_t *err)
{
    const char *e = getenv("HUSK_NET_FAIL_AT");
    (*step)++;
    if (e && atoi(e) == *step)
        return err_make(err, EIO, "%s: injected failure (HUSK_NET_FAIL_AT=%d)", what, *step);
    return 0;
}

static int tap_make(const char *name, err_t *err)
{
    _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, "open /dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        return err_errno(err, "create tap %s", name);
    if (ioctl(fd, TUNSETPERSIST, 1) < 0)
        return err_errno(err, "make tap %s persistent", name);
    return 0;
}

static int if_index_of(const char *name)
{
    return (int)if_nametoindex(name);
}

/* Undo of one interface, in the namespace, reverse order.  Reports the
 * first failure, goes on. */
static int undo_one(res_nl_t *nl, res_net_if_t *f, err_t *err)
{
    char buf[RES_NL_BUF];
    int first = 0;
    err_t e = ERR_INIT;
    if (f->filter_made && !f->qdisc_made) {
        /* the qdisc was there before us: remove only our filter */
        if (res_nl_talk(nl, res_nl_redirect_del(buf, f->index, RES_NET_PRIO), NULL, NULL,
                        "delete the redirect filter", &e) < 0 &&
            e.code != ENOENT && e.code != ENODEV && !first)
            first = err_wrap(&e, "%s", f->name), err_move(err, &e);
        err_clear(&e);
    }
    f->filter_made = false;
    if (f->qdisc_made) {
        if (res_nl_talk(nl, res_nl_qdisc_ingress(buf, RTM_DELQDISC, f->index), NULL, NULL,
                        "delete the ingress qdisc", &e) < 0 &&
            e.code != ENOENT && e.code != ENODEV && e.code != EINVAL && !first)
            first = err_wrap(&e, "%s", f->name), err_move(err, &e);
        err_clear(&e);
        /* adding the qdisc raised a zero queue length (veths of CNI) */
        if (res_nl_talk(nl, res_nl_link_txqlen(buf, f->index, f->txqlen), NULL, NULL,
                        "restore the queue length", &e) < 0 &&
            e.code != ENODEV && !first)
            first = err_wrap(&e, "%s", f->name), err_move(err, &e);
        err_clear(&e);
    }
    f->qdisc_made = false;
    if (f->tap_made) {
        /* deleting the tap removes its qdisc and filter with it */
        int idx = f->tap_index ? f->tap_index : if_index_of(f->tap);
        if (idx > 0 &&
            res_nl_talk(nl, res_nl_link_del(buf, idx), NULL, NULL, "delete the tap", &e) < 0 &&
            e.code != ENODEV && !first)
            first = err_wrap(&e, "%s", f->tap), err_move(err, &e);
        err_clear(&e);
    }
    f->tap_made = false;
    f->tap_index = 0;
    f->attached = false;
    return first;
}

/* The lowest tap<N>_husk free in n and in the namespace, N from pos. */
static void tap_name(const res_net_t *n, const res_net_if_t *f, unsigned pos, res_net_if_t *out)
{
    for (unsigned k = pos;; k++) {
        char name[RES_NET_IFNAMSIZ];
        snprintf(name, sizeof name, "tap%u%s", k % 100, RES_NET_TAP_SUFFIX);
        bool used = false;
        for (unsigned i = 0; i < n->n_ifs && !used; i++)
            used = &n->ifs[i] != f && n->ifs[i].tap_made && !strcmp(n->ifs[i].tap, name);
        if ((!used && if_index_of(name) <= 0) || k > pos + 100) {
            memcpy(out->tap, name, sizeof out->tap);
            return;
        }
    }
}

static int attach_one(res_nl_t *nl, res_net_t *n, res_net_if_t *f, unsigned pos, int *step,
                      err_t *err)
{
    char buf[RES_NL_BUF];
    int r;
    tap_name(n, f, pos, f);
    if (if_index_of(f->tap) > 0)
        return err_make(err, EEXIST, "tap %s already exists in the namespace", f->tap);
    if ((r = fault_step(step, "create tap", err)) < 0 || (r = tap_make(f->tap, err)) < 0)
        return r;
    f->tap_made = true;
    f->tap_index = if_index_of(f->tap);
    if (f->tap_index <= 0)
        return err_errno(err, "tap %s vanished", f->tap);
    if ((r = fault_step(step, "set up the tap", err)) < 0 ||
        (r = res_nl_talk(nl, res_nl_link_set(buf, f->tap_index, NULL, f->mtu, true, true), NULL,
                         NULL, "set the tap's MTU and up", err)) < 0)
        return r;
    /* ingress on the interface: keep one that was already there */
    if ((r = fault_step(step, "add the ingress qdisc", err)) < 0)
        return r;
    r = res_nl_talk(nl, res_nl_qdisc_ingress(buf, RTM_NEWQDISC, f->index), NULL, NULL,
                    "add an ingress qdisc", err);
    if (r == -EEXIST) {
        err_clear(err);
        r = 0;
    } else if (r < 0) {
        return r;
    } else {
        f->qdisc_made = true;
    }
    if ((r = fault_step(step, "add the redirect filter", err)) < 0 ||
        (r = res_nl_talk(nl, res_nl_redirect(buf, f->index, f->tap_index, RES_NET_PRIO), NULL, NULL,
                         "redirect the interface to the tap", err)) < 0)
        return r;
    f->filter_made = true;
    /* the tap is ours: its qdisc and filter go with it */
    if ((r = fault_step(step, "add the tap's ingress qdisc", err)) < 0 ||
        (r = res_nl_talk(nl, res_nl_qdisc_ingress(buf, RTM_NEWQDISC, f->tap_index), NULL, NULL,
                         "add the tap's ingress qdisc", err)) < 0 ||
        (r = fault_step(step, "add the tap's redirect filter", err)) < 0 ||
        (r = res_nl_talk(nl, res_nl_redirect(buf, f->tap_index, f->index, RES_NET_PRIO), NULL, NULL,
                         "redirect the tap to the interface", err)) < 0)
        return r;
    if (!f->up && (r = res_nl_talk(nl, res_nl_link_set(buf, f->index, NULL, 0, true, true), NULL,
                                   NULL, "set the interface up", err)) < 0)
        return r;
    f->attached = true;
    return 0;
}

static int attach_in_ns(void *arg, err_t *err)
{
    res_net_t *n = arg;
    res_nl_t *nl = NULL;
    int r = res_nl_open(&nl, err);
    if (r < 0)
        return r;
    int step = 0;
    bool done_now[RES_NET_MAX_IFS] = {false};
    for (unsigned i = 0; i < n->n_ifs && r == 0; i++) {
        res_net_if_t *f = &n->ifs[i];
        if (f->attached)
            continue;
        done_now[i] = true;
        r = attach_one(nl, n, f, i, &step, err);
        if (r < 0)
            err_wrap(err, "interface %s", f->name);
    }
    if (r < 0)
        for (unsigned i = n->n_ifs; i-- > 0;)
            if (done_now[i]) {
                err_t e = ERR_INIT;
                if (undo_one(nl, &n->ifs[i], &e) < 0)
                    log_warn("network: undo %s: %s", n->ifs[i].name, err_str(&e));
                err_clear(&e);
            }
    res_nl_close(&nl);
    return r;
}

static bool any_attached(const res_net_t *n, int only);

static void release_hold(res_net_t *n)
{
    if (n->held)
        close(n->held_fd);
    n->held = false;
}

int res_net_attach(res_net_t *n, err_t *err)
{
    if (!n->held) {
        int fd = open(n->netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err_errno(err, "open network namespace %s", n->netns);
        n->held_fd = fd;
        n->held = true;
    }
    int r = in_netns(n->netns, n->held_fd, attach_in_ns, n, err);
    if (r < 0) {
        if (!any_attached(n, -1))
            release_hold(n);
        return err_wrap(err, "network namespace %s", n->netns);
    }
    for (unsigned i = 0; i < n->n_ifs; i++)
        log_info("network: %s (%s) -> %s in %s, tc-filter redirect both ways", n->ifs[i].name,
                 n->ifs[i].kind[0] ? n->ifs[i].kind : "device", n->ifs[i].tap, n->netns);
    return 0;
}

struct detach_ctx {
    res_net_t *n;
    int only; /* -1: all */
};

static int detach_in_ns(void *arg, err_t *err)
{
    struct detach_ctx *c = arg;
    res_nl_t *nl = NULL;
    int r = res_nl_open(&nl, err);
    if (r < 0)
        return r;
    int first = 0;
    for (unsigned i = c->n->n_ifs; i-- > 0;) {
        if (c->only >= 0 && (int)i != c->only)
            continue;
        err_t e = ERR_INIT;
        if (undo_one(nl, &c->n->ifs[i], &e) < 0 && !first)
            first = -e.code, err_move(err, &e);
        err_clear(&e);
    }
    res_nl_close(&nl);
    return first;
}

static bool any_attached(const res_net_t *n, int only)
{
    for (unsigned i = 0; i < n->n_ifs; i++)
        if ((only < 0 || (int)i == only) &&
            (n->ifs[i].tap_made || n->ifs[i].qdisc_made || n->ifs[i].filter_made))
            return true;
    return false;
}

static int detach(res_net_t *n, int only, err_t *err)
{
    int r = 0;
    if (n->netns[0] && any_attached(n, only)) {
        struct detach_ctx c = {n, only};
        r = in_netns(n->netns, n->held ? n->held_fd : -1, detach_in_ns, &c, err);
        if (r < 0 && !n->held && (err->code == ENOENT || err->code == EINVAL) &&
            access(n->netns, F_OK) < 0) {
            /* never held and the namespace is gone, and everything in it */
            err_clear(err);
            r = 0;
        }
        if (r < 0)
            err_wrap(err, "restore network namespace %s", n->netns);
        else
            for (unsigned i = 0; i < n->n_ifs; i++)
                if (only < 0 || (int)i == only)
                    n->ifs[i].tap_made = n->ifs[i].qdisc_made = n->ifs[i].filter_made =
                        n->ifs[i].attached = false;
    }
    if (only < 0 || (r == 0 && !any_attached(n, -1)))
        release_hold(n);
    return r;
}

int res_net_detach(res_net_t *n, err_t *err)
{
    return detach(n, -1, err);
}

int res_net_detach_one(res_net_t *n, unsigned i, err_t *err)
{
    if (i >= n->n_ifs)
        return err_make(err, EINVAL, "network: no interface %u", i);
    int r = detach(n, (int)i, err);
    if (r < 0)
        return r;
    memmove(&n->ifs[i], &n->ifs[i + 1], (n->n_ifs - i - 1) * sizeof n->ifs[0]);
    n->n_ifs--;
    return 0;
}

/* ---- adoption (a restarted daemon takes over the taps of its sandbox) ------- */

void res_net_attach_state(const res_net_if_t *f, char out[RES_NET_STATE_MAX])
{
    snprintf(out, RES_NET_STATE_MAX, "qdisc=%d,txqlen=%u", f->qdisc_made ? 1 : 0, f->txqlen);
}

static int attach_state_parse(const char *s, bool *qdisc_made, unsigned *txqlen)
{
    int q = -1, used = 0;
    unsigned long t = 0;
    if (sscanf(s, "qdisc=%d,txqlen=%lu%n", &q, &t, &used) != 2 || (size_t)used != strlen(s) ||
        (q != 0 && q != 1) || t > 1000000 || strchr(s, '-'))
        return -EINVAL;
    *qdisc_made = q == 1;
    *txqlen = (unsigned)t;
    return 0;
}

struct adopt_ctx {
    res_net_t *n;
    const char *const *taps;
    const uint8_t (*macs)[6];
    const char *const *states;
    size_t count;
    unsigned adopted;
};

static int adopt_in_ns(void *arg, err_t *err)
{
    struct adopt_ctx *c = arg;
    res_net_t *n = c->n;
    for (size_t k = 0; k < c->count; k++) {
        int idx = if_index_of(c->taps[k]);
        if (idx <= 0)
            continue; /* gone already: nothing to release */
        res_net_if_t *f = NULL;
        for (unsigned i = 0; i < n->n_ifs && !f; i++)
            if (!n->ifs[i].tap_made && !memcmp(n->ifs[i].mac, c->macs[k], 6))
                f = &n->ifs[i];
        if (!f) {
            /* its interface went while no daemon watched: keep the tap
             * alone, so that the release deletes it */
            if (n->n_ifs >= RES_NET_MAX_IFS)
                return err_make(err, ENOSPC, "adopt tap %s: too many interfaces", c->taps[k]);
            f = &n->ifs[n->n_ifs++];
            memset(f, 0, sizeof *f);
        } else {
            /* our redirect is on the interface; the ingress qdisc goes too
             * when the state says it was ours (unknown: it stays) */
            f->filter_made = true;
            if (c->states && c->states[k])
                attach_state_parse(c->states[k], &f->qdisc_made, &f->txqlen);
        }
        snprintf(f->tap, sizeof f->tap, "%s", c->taps[k]);
        f->tap_index = idx;
        f->tap_made = true;
        f->attached = f->index > 0;
        c->adopted++;
    }
    return 0;
}

int res_net_adopt(res_net_t *n, const char *const *taps, const uint8_t (*macs)[6],
                  const char *const *states, size_t count, err_t *err)
{
    for (size_t k = 0; k < count; k++) {
        if (!taps[k] || strncmp(taps[k], "tap", 3) || strlen(taps[k]) >= RES_NET_IFNAMSIZ ||
            strcmp(taps[k] + strlen(taps[k]) - strlen(RES_NET_TAP_SUFFIX), RES_NET_TAP_SUFFIX))
            return err_make(err, EINVAL, "adopt: `%s` is not a tap of ours (tap<N>%s)",
                            taps[k] ? taps[k] : "", RES_NET_TAP_SUFFIX);
        bool q;
        unsigned t;
        if (states && states[k] && attach_state_parse(states[k], &q, &t) < 0)
            return err_make(err, EINVAL, "adopt %s: attach state `%s` is not qdisc=<0|1>,txqlen=<n>",
                            taps[k], states[k]);
    }
    if (!n->held) {
        int fd = open(n->netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err_errno(err, "open network namespace %s", n->netns);
        n->held_fd = fd;
        n->held = true;
    }
    struct adopt_ctx c = {.n = n, .taps = taps, .macs = macs, .states = states, .count = count};
    int r = in_netns(n->netns, n->held_fd, adopt_in_ns, &c, err);
    if (r < 0 || !any_attached(n, -1))
        release_hold(n);
    if (r < 0)
        return err_wrap(err, "network namespace %s", n->netns);
    return (int)c.adopted;
}

/* ---- JSON for the agent ------------------------------------------------------ */

static json_t *ip_str(int family, const uint8_t *a)
{
    char s[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, a, s, sizeof s))
        return json_null();
    return json_string(s);
}

static json_t *prefix_str(int family, const uint8_t *a, unsigned len)
{
    char s[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 16];
    if (!inet_ntop(family, a, s, sizeof s))
        return json_null();
    snprintf(out, sizeof out, "%s/%u", s, len);
    return json_string(out);
}

char *res_net_iface_json(const res_net_if_t *f)
{
    char mac[18];
    res_nl_mac_format(f->mac, mac);
    json_t *addrs = json_array();
    for (unsigned i = 0; i < f->n_addrs; i++)
        json_array_append_new(addrs,
                              prefix_str(f->addrs[i].family, f->addrs[i].addr, f->addrs[i].prefix));
    json_t *j = json_pack("{s:s, s:s, s:I, s:o}", "name", f->name, "mac", mac, "mtu",
                          (json_int_t)f->mtu, "addresses", addrs);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

char *res_net_routes_json(const res_net_t *n)
{
    json_t *a = json_array();
    /* routes without a gateway first: a gateway must be reachable */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < n->n_routes; i++) {
            const res_net_route_t *r = &n->routes[i];
            if (r->has_gw != (pass == 1))
                continue;
            json_t *o = json_object();
            json_object_set_new(o, "dest",
                                r->dst_len
                                    ? prefix_str(r->family, r->dst, r->dst_len)
                                    : json_string(r->family == AF_INET6 ? "::/0" : "0.0.0.0/0"));
            if (r->has_gw)
                json_object_set_new(o, "gateway", ip_str(r->family, r->gw));
            if (r->has_src)
                json_object_set_new(o, "source", ip_str(r->family, r->src));
            if (r->dev[0])
                json_object_set_new(o, "device", json_string(r->dev));
            json_object_set_new(o, "scope", json_integer(r->scope));
            if (r->metric)
                json_object_set_new(o, "metric", json_integer(r->metric));
            json_array_append_new(a, o);
        }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

char *res_net_neighs_json(const res_net_t *n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n->n_neighs; i++) {
        const res_net_neigh_t *e = &n->neighs[i];
        char mac[18];
        res_nl_mac_format(e->mac, mac);
        json_array_append_new(a, json_pack("{s:o, s:s, s:s, s:I}", "ip", ip_str(e->family, e->ip),
                                           "mac", mac, "device", e->dev, "state",
                                           (json_int_t)e->state));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}
