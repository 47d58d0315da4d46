/* resources/netlink: see netlink.h. */
#include "resources/netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct res_nl {
    struct mnl_socket *sock;
    unsigned portid;
    unsigned seq;
};

int res_nl_open(res_nl_t **out, err_t *err)
{
    res_nl_t *nl = calloc(1, sizeof *nl);
    if (!nl)
        return err_make(err, ENOMEM, "netlink: out of memory");
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl->sock || mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        int r = err_errno(err, "netlink: open a NETLINK_ROUTE socket");
        if (nl->sock)
            mnl_socket_close(nl->sock);
        free(nl);
        return r;
    }
    int one = 1;
    /* extended ACKs: the kernel's own words in errors */
    mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof one);
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    *out = nl;
    return 0;
}

void res_nl_close(res_nl_t **nl)
{
    if (!nl || !*nl)
        return;
    mnl_socket_close((*nl)->sock);
    free(*nl);
    *nl = NULL;
}

/* The extended-ACK message of an error reply, if any. */
static const char *ext_ack_msg(const struct nlmsghdr *nlh)
{
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
        return NULL;
    size_t off = sizeof *e;
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
        off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
    if (mnl_nlmsg_get_payload_len(nlh) < off)
        return NULL;
    const struct nlattr *attr;
    const void *pl = (const char *)e + off;
    mnl_attr_for_each_payload(pl, mnl_nlmsg_get_payload_len(nlh) - off)
    {
        const struct nlattr *a = attr;
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
            return mnl_attr_get_str(a);
    }
    return NULL;
}

int res_nl_talk(res_nl_t *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data, const char *what,
                err_t *err)
{
    bool dump = (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    if (!dump)
        nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = ++nl->seq;
    if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
        return err_errno(err, "netlink: %s: send", what);
    static __thread char buf[32768];
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
        if (n < 0)
            return err_errno(err, "netlink: %s: receive", what);
        /* walk the datagram by hand to read error replies ourselves */
        const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
        int len = (int)n;
        while (mnl_nlmsg_ok(h, len)) {
            if (h->nlmsg_seq != nl->seq || h->nlmsg_pid != nl->portid) {
                h = mnl_nlmsg_next(h, &len);
                continue;
            }
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
                if (e->error == 0)
                    return 0;
                const char *ext = ext_ack_msg(h);
                errno = -e->error;
                return err_make(err, -e->error, "netlink: %s: %s%s%s", what, strerror(-e->error),
                                ext ? ": " : "", ext ? ext : "");
            }
            if (h->nlmsg_type >= NLMSG_MIN_TYPE && cb) {
                int r = cb(h, data);
                if (r == MNL_CB_ERROR)
                    return err_make(err, EPROTO, "netlink: %s: cannot parse the answer", what);
            }
            h = mnl_nlmsg_next(h, &len);
        }
    }
}

static struct nlmsghdr *hdr(void *buf, uint16_t type, uint16_t flags)
{
    memset(buf, 0, RES_NL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    return nlh;
}

static size_t alen(int family)
{
    return family == AF_INET6 ? 16 : 4;
}

struct nlmsghdr *res_nl_dump(void *buf, uint16_t type, uint8_t family)
{
    struct nlmsghdr *nlh = hdr(buf, type, NLM_F_DUMP);
    switch (type) {
    case RTM_GETLINK: {
        struct ifinfomsg *i = mnl_nlmsg_put_extra_header(nlh, sizeof *i);
        i->ifi_family = family;
        break;
    }
    case RTM_GETADDR: {
        struct ifaddrmsg *i = mnl_nlmsg_put_extra_header(nlh, sizeof *i);
        i->ifa_family = family;
        break;
    }
    case RTM_GETROUTE: {
        struct rtmsg *r = mnl_nlmsg_put_extra_header(nlh, sizeof *r);
        r->rtm_family = family;
        break;
    }
    case RTM_GETNEIGH: {
        struct ndmsg *n = mnl_nlmsg_put_extra_header(nlh, sizeof *n);
        n->ndm_family = family;
        break;
    }
    default: { /* RTM_GETQDISC, RTM_GETTFILTER */
        struct tcmsg *t = mnl_nlmsg_put_extra_header(nlh, sizeof *t);
        t->tcm_family = family;
        break;
    }
    }
    return nlh;
}

struct nlmsghdr *res_nl_link_set(void *buf, int ifindex, const char *name, unsigned mtu,
                                 bool set_up, bool up)
{
    struct nlmsghdr *nlh = hdr(buf, RTM_NEWLINK, 0);
    struct ifinfomsg *i = mnl_nlmsg_put_extra_header(nlh, sizeof *i);
    i->ifi_family = AF_UNSPEC;
    i->ifi_index = ifindex;
    if (set_up) {
        i->ifi_change = IFF_UP;
        i->ifi_flags = up ? IFF_UP : 0;
    }
    if (name)
        mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    if (mtu)
        mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
    return nlh;
}

struct nlmsghdr *res_nl_link_txqlen(void *buf, int ifindex, unsigned txqlen)
{
    struct nlmsghdr *nlh = res_nl_link_set(buf, ifindex, NULL, 0, false, false);
    mnl_attr_put_u32(nlh, IFLA_TXQLEN, txqlen);
    return nlh;
}

struct nlmsghdr *res_nl_link_del(void *buf, int ifindex)
{
    struct nlmsghdr *nlh = hdr(buf, RTM_DELLINK, 0);
    struct ifinfomsg *i = mnl_nlmsg_put_extra_header(nlh, sizeof *i);
    i->ifi_family = AF_UNSPEC;
    i->ifi_index = ifindex;
    return nlh;
}

struct nlmsghdr *res_nl_addr(void *buf, uint16_t cmd, int family, int ifindex, const void *addr,
                             unsigned prefix, bool nodad)
{
    struct nlmsghdr *nlh = hdr(buf, cmd, cmd == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_REPLACE : 0);
    struct ifaddrmsg *a = mnl_nlmsg_put_extra_header(nlh, sizeof *a);
    a->ifa_family = (uint8_t)family;
    a->ifa_prefixlen = (uint8_t)prefix;
    a->ifa_index = (unsigned)ifindex;
    a->ifa_scope = RT_SCOPE_UNIVERSE;
    mnl_attr_put(nlh, IFA_LOCAL, alen(family), addr);
    mnl_attr_put(nlh, IFA_ADDRESS, alen(family), addr);
    if (family == AF_INET6 && nodad) {
        a->ifa_flags = IFA_F_NODAD;
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    }
    return nlh;
}

struct nlmsghdr *res_nl_route(void *buf, uint16_t cmd, int family, const void *dst,
                              unsigned dst_len, const void *gw, const void *src, int oif,
                              unsigned scope, unsigned metric)
{
    struct nlmsghdr *nlh = hdr(buf, cmd, cmd == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_REPLACE : 0);
    struct rtmsg *r = mnl_nlmsg_put_extra_header(nlh, sizeof *r);
    r->rtm_family = (uint8_t)family;
    r->rtm_dst_len = (uint8_t)dst_len;
    r->rtm_table = RT_TABLE_MAIN;
    r->rtm_protocol = RTPROT_BOOT;
    r->rtm_scope = (uint8_t)scope;
    r->rtm_type = RTN_UNICAST;
    if (dst && dst_len)
        mnl_attr_put(nlh, RTA_DST, alen(family), dst);
    if (gw)
        mnl_attr_put(nlh, RTA_GATEWAY, alen(family), gw);
    if (src)
        mnl_attr_put(nlh, RTA_PREFSRC, alen(family), src);
    if (oif)
        mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
    if (metric)
        mnl_attr_put_u32(nlh, RTA_PRIORITY, metric);
    return nlh;
}

struct nlmsghdr *res_nl_neigh(void *buf, int family, int ifindex, const void *ip,
                              const uint8_t lladdr[6], uint16_t state)
{
    struct nlmsghdr *nlh = hdr(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
    struct ndmsg *n = mnl_nlmsg_put_extra_header(nlh, sizeof *n);
    n->ndm_family = (uint8_t)family;
    n->ndm_ifindex = ifindex;
    n->ndm_state = state;
    mnl_attr_put(nlh, NDA_DST, alen(family), ip);
    mnl_attr_put(nlh, NDA_LLADDR, 6, lladdr);
    return nlh;
}

struct nlmsghdr *res_nl_qdisc_ingress(void *buf, uint16_t cmd, int ifindex)
{
    struct nlmsghdr *nlh = hdr(buf, cmd, cmd == RTM_NEWQDISC ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct tcmsg *t = mnl_nlmsg_put_extra_header(nlh, sizeof *t);
    t->tcm_family = AF_UNSPEC;
    t->tcm_ifindex = ifindex;
    t->tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);
    t->tcm_parent = TC_H_INGRESS;
    mnl_attr_put_strz(nlh, TCA_KIND, "ingress");
    return nlh;
}

struct nlmsghdr *res_nl_redirect(void *buf, int ifindex, int to_ifindex, uint16_t prio)
{
    struct nlmsghdr *nlh = hdr(buf, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
    struct tcmsg *t = mnl_nlmsg_put_extra_header(nlh, sizeof *t);
    t->tcm_family = AF_UNSPEC;
    t->tcm_ifindex = ifindex;
    t->tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);
    t->tcm_info = TC_H_MAKE((uint32_t)prio << 16, htons(ETH_P_ALL));
    mnl_attr_put_strz(nlh, TCA_KIND, "u32");
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    /* one key with mask 0: every packet matches */
    struct {
        struct tc_u32_sel sel;
        struct tc_u32_key key;
    } s;
    memset(&s, 0, sizeof s);
    s.sel.flags = TC_U32_TERMINAL;
    s.sel.nkeys = 1;
    mnl_attr_put(nlh, TCA_U32_SEL, sizeof s, &s);
    struct nlattr *acts = mnl_attr_nest_start(nlh, TCA_U32_ACT);
    struct nlattr *act = mnl_attr_nest_start(nlh, 1);
    mnl_attr_put_strz(nlh, TCA_ACT_KIND, "mirred");
    struct nlattr *aopts = mnl_attr_nest_start(nlh, TCA_ACT_OPTIONS);
    struct tc_mirred m;
    memset(&m, 0, sizeof m);
    m.action = TC_ACT_STOLEN;
    m.eaction = TCA_EGRESS_REDIR;
    m.ifindex = (uint32_t)to_ifindex;
    mnl_attr_put(nlh, TCA_MIRRED_PARMS, sizeof m, &m);
    mnl_attr_nest_end(nlh, aopts);
    mnl_attr_nest_end(nlh, act);
    mnl_attr_nest_end(nlh, acts);
    mnl_attr_nest_end(nlh, opts);
    return nlh;
}

struct nlmsghdr *res_nl_redirect_del(void *buf, int ifindex, uint16_t prio)
{
    struct nlmsghdr *nlh = hdr(buf, RTM_DELTFILTER, 0);
    struct tcmsg *t = mnl_nlmsg_put_extra_header(nlh, sizeof *t);
    t->tcm_family = AF_UNSPEC;
    t->tcm_ifindex = ifindex;
    t->tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);
    t->tcm_info = TC_H_MAKE((uint32_t)prio << 16, htons(ETH_P_ALL));
    return nlh;
}

int res_nl_mac_parse(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (!s ||
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) !=
            6 ||
        strlen(s) != 17)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

void res_nl_mac_format(const uint8_t mac[6], char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}
