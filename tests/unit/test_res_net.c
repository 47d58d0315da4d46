/* Unit tests for resources/net and resources/netlink: request builders
 * (tc ingress qdisc, u32 + mirred redirect, links, addresses, routes,
 * neighbours), parsing of dumped messages, the JSON for the agent, the
 * spec's network namespace.  Without privileges.  As root (and with `ip`
 * and `tc`), one more test attaches and detaches a real namespace, with a
 * failure injected at every step, and checks that nothing is left. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "oci/spec.h"
#include "resources/net.h"
#include "resources/netlink.h"

static const struct nlattr *nested(const struct nlattr *parent, int type)
{
    const struct nlattr *a;
    mnl_attr_for_each_nested(a, parent)
    {
        if (mnl_attr_get_type(a) == type)
            return a;
    }
    return NULL;
}

static const struct nlattr *top(const struct nlmsghdr *nlh, size_t hdrlen, int type)
{
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, hdrlen)
    {
        if (mnl_attr_get_type(a) == type)
            return a;
    }
    return NULL;
}

static void test_mac(void **state)
{
    uint8_t m[6];
    char s[18];
    assert_int_equal(res_nl_mac_parse("0a:1B:2c:3d:4e:ff", m), 0);
    res_nl_mac_format(m, s);
    assert_string_equal(s, "0a:1b:2c:3d:4e:ff");
    assert_int_equal(res_nl_mac_parse("0a:1b:2c:3d:4e", m), -1);
    assert_int_equal(res_nl_mac_parse("0a:1b:2c:3d:4e:ff:00", m), -1);
    assert_int_equal(res_nl_mac_parse("zz:1b:2c:3d:4e:ff", m), -1);
    assert_int_equal(res_nl_mac_parse(NULL, m), -1);
}

static void test_qdisc(void **state)
{
    char buf[RES_NL_BUF];
    struct nlmsghdr *nlh = res_nl_qdisc_ingress(buf, RTM_NEWQDISC, 7);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWQDISC);
    assert_true(nlh->nlmsg_flags & NLM_F_EXCL);
    assert_true(nlh->nlmsg_flags & NLM_F_CREATE);
    const struct tcmsg *t = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(t->tcm_ifindex, 7);
    assert_int_equal(t->tcm_parent, TC_H_INGRESS);
    assert_int_equal(t->tcm_handle, 0xffff0000u);
    const struct nlattr *k = top(nlh, sizeof *t, TCA_KIND);
    assert_non_null(k);
    assert_string_equal(mnl_attr_get_str(k), "ingress");
    nlh = res_nl_qdisc_ingress(buf, RTM_DELQDISC, 7);
    assert_int_equal(nlh->nlmsg_type, RTM_DELQDISC);
    assert_false(nlh->nlmsg_flags & NLM_F_CREATE);
}

static void test_redirect(void **state)
{
    char buf[RES_NL_BUF];
    struct nlmsghdr *nlh = res_nl_redirect(buf, 3, 9, RES_NET_PRIO);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWTFILTER);
    const struct tcmsg *t = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(t->tcm_ifindex, 3);
    assert_int_equal(t->tcm_parent, 0xffff0000u);
    assert_int_equal(TC_H_MAJ(t->tcm_info) >> 16, RES_NET_PRIO);
    assert_int_equal(ntohs((uint16_t)TC_H_MIN(t->tcm_info)), 0x0003 /* ETH_P_ALL */);
    assert_string_equal(mnl_attr_get_str(top(nlh, sizeof *t, TCA_KIND)), "u32");
    const struct nlattr *opts = top(nlh, sizeof *t, TCA_OPTIONS);
    assert_non_null(opts);
    const struct nlattr *sel = nested(opts, TCA_U32_SEL);
    assert_non_null(sel);
    const struct tc_u32_sel *s = mnl_attr_get_payload(sel);
    assert_int_equal(s->nkeys, 1);
    assert_true(s->flags & TC_U32_TERMINAL);
    assert_int_equal(mnl_attr_get_payload_len(sel), sizeof *s + sizeof(struct tc_u32_key));
    assert_int_equal(s->keys[0].mask, 0);
    const struct nlattr *act = nested(nested(opts, TCA_U32_ACT), 1);
    assert_non_null(act);
    assert_string_equal(mnl_attr_get_str(nested(act, TCA_ACT_KIND)), "mirred");
    const struct nlattr *parms = nested(nested(act, TCA_ACT_OPTIONS), TCA_MIRRED_PARMS);
    assert_non_null(parms);
    const struct tc_mirred *m = mnl_attr_get_payload(parms);
    assert_int_equal(m->eaction, TCA_EGRESS_REDIR);
    assert_int_equal(m->action, TC_ACT_STOLEN);
    assert_int_equal(m->ifindex, 9);
    nlh = res_nl_redirect_del(buf, 3, RES_NET_PRIO);
    assert_int_equal(nlh->nlmsg_type, RTM_DELTFILTER);
    t = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(TC_H_MAJ(t->tcm_info) >> 16, RES_NET_PRIO);
}

static void test_builders(void **state)
{
    char buf[RES_NL_BUF];
    struct nlmsghdr *nlh = res_nl_link_set(buf, 4, "eth0", 1400, true, true);
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(ifi->ifi_index, 4);
    assert_int_equal(ifi->ifi_change, IFF_UP);
    assert_int_equal(ifi->ifi_flags, IFF_UP);
    assert_string_equal(mnl_attr_get_str(top(nlh, sizeof *ifi, IFLA_IFNAME)), "eth0");
    assert_int_equal(mnl_attr_get_u32(top(nlh, sizeof *ifi, IFLA_MTU)), 1400);
    nlh = res_nl_link_set(buf, 4, NULL, 0, false, false);
    ifi = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(ifi->ifi_change, 0);
    assert_null(top(nlh, sizeof *ifi, IFLA_MTU));

    struct in6_addr a6;
    inet_pton(AF_INET6, "fd00:99::2", &a6);
    nlh = res_nl_addr(buf, RTM_NEWADDR, AF_INET6, 5, &a6, 64, true);
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(ifa->ifa_prefixlen, 64);
    assert_int_equal(ifa->ifa_index, 5);
    assert_int_equal(mnl_attr_get_u32(top(nlh, sizeof *ifa, IFA_FLAGS)), IFA_F_NODAD);
    assert_memory_equal(mnl_attr_get_payload(top(nlh, sizeof *ifa, IFA_LOCAL)), &a6, 16);

    struct in_addr gw;
    inet_pton(AF_INET, "10.99.0.1", &gw);
    nlh = res_nl_route(buf, RTM_NEWROUTE, AF_INET, NULL, 0, &gw, NULL, 5, RT_SCOPE_UNIVERSE, 0);
    const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(rt->rtm_dst_len, 0);
    assert_int_equal(rt->rtm_table, RT_TABLE_MAIN);
    assert_null(top(nlh, sizeof *rt, RTA_DST));
    assert_memory_equal(mnl_attr_get_payload(top(nlh, sizeof *rt, RTA_GATEWAY)), &gw, 4);
    assert_int_equal(mnl_attr_get_u32(top(nlh, sizeof *rt, RTA_OIF)), 5);
    assert_true(nlh->nlmsg_flags & NLM_F_REPLACE);

    uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
    nlh = res_nl_neigh(buf, AF_INET, 5, &gw, mac, NUD_PERMANENT);
    const struct ndmsg *nd = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(nd->ndm_state, NUD_PERMANENT);
    assert_memory_equal(mnl_attr_get_payload(top(nlh, sizeof *nd, NDA_LLADDR)), mac, 6);
}

/* ---- parsing: messages as the kernel dumps them ---- */

static struct nlmsghdr *mk_link(char *buf, int index, const char *name, const char *kind,
                                unsigned type, unsigned flags, const uint8_t *mac)
{
    memset(buf, 0, RES_NL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    struct ifinfomsg *i = mnl_nlmsg_put_extra_header(nlh, sizeof *i);
    i->ifi_index = index;
    i->ifi_type = (uint16_t)type;
    i->ifi_flags = flags;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put_u32(nlh, IFLA_MTU, 1450);
    if (mac)
        mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
    if (kind) {
        struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, kind);
        mnl_attr_nest_end(nlh, li);
    }
    return nlh;
}

static struct nlmsghdr *mk_addr(char *buf, int index, int family, const char *ip, unsigned prefix,
                                unsigned scope)
{
    memset(buf, 0, RES_NL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    struct ifaddrmsg *a = mnl_nlmsg_put_extra_header(nlh, sizeof *a);
    a->ifa_family = (uint8_t)family;
    a->ifa_index = (unsigned)index;
    a->ifa_prefixlen = (uint8_t)prefix;
    a->ifa_scope = (uint8_t)scope;
    uint8_t b[16];
    inet_pton(family, ip, b);
    mnl_attr_put(nlh, IFA_ADDRESS, family == AF_INET ? 4 : 16, b);
    return nlh;
}

static struct nlmsghdr *mk_route(char *buf, int family, const char *dst, unsigned dst_len,
                                 const char *gw, int oif, unsigned proto, unsigned table)
{
    memset(buf, 0, RES_NL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    struct rtmsg *r = mnl_nlmsg_put_extra_header(nlh, sizeof *r);
    r->rtm_family = (uint8_t)family;
    r->rtm_dst_len = (uint8_t)dst_len;
    r->rtm_table = (uint8_t)table;
    r->rtm_protocol = (uint8_t)proto;
    r->rtm_type = RTN_UNICAST;
    uint8_t b[16];
    size_t l = family == AF_INET ? 4 : 16;
    if (dst) {
        inet_pton(family, dst, b);
        mnl_attr_put(nlh, RTA_DST, l, b);
    }
    if (gw) {
        inet_pton(family, gw, b);
        mnl_attr_put(nlh, RTA_GATEWAY, l, b);
    }
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
    mnl_attr_put_u32(nlh, RTA_TABLE, table);
    return nlh;
}

static void test_parse(void **state)
{
    static res_net_t n;
    memset(&n, 0, sizeof n);
    char buf[RES_NL_BUF];
    uint8_t mac[6] = {0x0a, 0x58, 0x0a, 0x63, 0, 2};
    assert_int_equal(
        res_net_parse_link(
            mk_link(buf, 1, "lo", NULL, ARPHRD_LOOPBACK, IFF_LOOPBACK | IFF_UP, NULL), &n),
        0);
    assert_int_equal(
        res_net_parse_link(mk_link(buf, 2, "eth0", "veth", ARPHRD_ETHER, IFF_UP, mac), &n), 1);
    assert_int_equal(
        res_net_parse_link(mk_link(buf, 3, "tap0_husk", "tun", ARPHRD_ETHER, IFF_UP, mac), &n), 0);
    assert_int_equal(
        res_net_parse_link(mk_link(buf, 4, "br0", "bridge", ARPHRD_ETHER, IFF_UP, mac), &n), 0);
    assert_int_equal(n.n_ifs, 1);
    assert_string_equal(n.ifs[0].name, "eth0");
    assert_string_equal(n.ifs[0].kind, "veth");
    assert_int_equal(n.ifs[0].mtu, 1450);
    assert_memory_equal(n.ifs[0].mac, mac, 6);
    assert_true(n.ifs[0].up);

    assert_int_equal(res_net_parse_addr(mk_addr(buf, 2, AF_INET, "10.99.0.2", 24, 0), &n), 1);
    assert_int_equal(res_net_parse_addr(mk_addr(buf, 2, AF_INET6, "fd00:99::2", 64, 0), &n), 1);
    assert_int_equal(res_net_parse_addr(
                         mk_addr(buf, 2, AF_INET6, "fe80::858:aff:fe63:2", 64, RT_SCOPE_LINK), &n),
                     0);
    assert_int_equal(res_net_parse_addr(mk_addr(buf, 1, AF_INET, "127.0.0.1", 8, 254), &n), 0);
    assert_int_equal(n.ifs[0].n_addrs, 2);

    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET, NULL, 0, "10.99.0.1", 2, RTPROT_BOOT, RT_TABLE_MAIN), &n),
        1);
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET, "10.99.0.0", 24, NULL, 2, RTPROT_KERNEL, RT_TABLE_MAIN), &n),
        0);
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET, "10.99.0.2", 32, NULL, 2, RTPROT_KERNEL, RT_TABLE_LOCAL), &n),
        0);
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET6, NULL, 0, "fd00:99::1", 2, RTPROT_BOOT, RT_TABLE_MAIN), &n),
        1);
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET6, "fe80::", 64, NULL, 2, RTPROT_BOOT, RT_TABLE_MAIN), &n),
        0);
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET, "10.1.0.0", 16, NULL, 1, RTPROT_BOOT, RT_TABLE_MAIN), &n),
        0); /* through lo */
    assert_int_equal(
        res_net_parse_route(
            mk_route(buf, AF_INET, "192.168.5.0", 24, NULL, 2, RTPROT_STATIC, RT_TABLE_MAIN), &n),
        1);
    assert_int_equal(n.n_routes, 3);
    assert_string_equal(n.routes[0].dev, "eth0");

    /* malformed: short address, short header */
    struct nlmsghdr *bad = mk_addr(buf, 2, AF_INET, "10.0.0.1", 8, 0);
    struct nlattr *a =
        (struct nlattr *)((char *)mnl_nlmsg_get_payload(bad) + MNL_ALIGN(sizeof(struct ifaddrmsg)));
    a->nla_len = 6; /* 2 bytes of address */
    assert_true(res_net_parse_addr(bad, &n) < 0);
    bad->nlmsg_len = sizeof(struct nlmsghdr) + 2;
    assert_true(res_net_parse_link(bad, &n) < 0);

    /* neighbours: only permanent ones */
    memset(buf, 0, sizeof buf);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWNEIGH;
    struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof *nd);
    nd->ndm_family = AF_INET;
    nd->ndm_ifindex = 2;
    nd->ndm_state = NUD_REACHABLE;
    struct in_addr ip;
    inet_pton(AF_INET, "10.99.0.1", &ip);
    mnl_attr_put(nlh, NDA_DST, 4, &ip);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
    assert_int_equal(res_net_parse_neigh(nlh, &n), 0);
    nd->ndm_state = NUD_PERMANENT;
    assert_int_equal(res_net_parse_neigh(nlh, &n), 1);
    assert_int_equal(n.n_neighs, 1);

    /* JSON for the agent */
    char *s = res_net_iface_json(&n.ifs[0]);
    assert_string_equal(s, "{\"name\":\"eth0\",\"mac\":\"0a:58:0a:63:00:02\",\"mtu\":1450,"
                           "\"addresses\":[\"10.99.0.2/24\",\"fd00:99::2/64\"]}");
    free(s);
    s = res_net_routes_json(&n);
    /* routes without a gateway first */
    assert_string_equal(s, "[{\"dest\":\"192.168.5.0/24\",\"device\":\"eth0\",\"scope\":0},"
                           "{\"dest\":\"0.0.0.0/0\",\"gateway\":\"10.99.0.1\",\"device\":\"eth0\","
                           "\"scope\":0},"
                           "{\"dest\":\"::/0\",\"gateway\":\"fd00:99::1\",\"device\":\"eth0\","
                           "\"scope\":0}]");
    free(s);
    s = res_net_neighs_json(&n);
    assert_string_equal(s, "[{\"ip\":\"10.99.0.1\",\"mac\":\"0a:58:0a:63:00:02\",\"device\":"
                           "\"eth0\",\"state\":128}]");
    free(s);
}

static void test_spec(void **state)
{
    const char *doc = "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},\"linux\":"
                      "{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"network\",\"path\":"
                      "\"/run/netns/x\"}]}}";
    oci_spec_t *s = NULL;
    err_t err = ERR_INIT;
    assert_int_equal(oci_spec_parse(doc, strlen(doc), &s, &err), 0);
    const char *p = NULL;
    assert_int_equal(res_net_netns_of_spec(s, &p), 1);
    assert_string_equal(p, "/run/netns/x");
    oci_spec_destroy(&s);
    doc = "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\"},\"linux\":"
          "{\"namespaces\":[{\"type\":\"network\"}]}}";
    assert_int_equal(oci_spec_parse(doc, strlen(doc), &s, &err), 0);
    assert_int_equal(res_net_netns_of_spec(s, &p), 0);
    oci_spec_destroy(&s);
    assert_int_equal(res_net_netns_of_spec(NULL, &p), 0);
}

/* ---- privileged: a real namespace ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int setup_ns(void **state)
{
    if (geteuid() != 0 || sh("command -v ip >/dev/null && command -v tc >/dev/null") != 0)
        return 0;
    char name[64];
    snprintf(name, sizeof name, "husk-ut-%d", (int)getpid());
    sh("ip netns del %s 2>/dev/null", name);
    if (sh("ip netns add %s && ip -n %s link add eth0 txqueuelen 0 type veth peer name peer0 && "
           "ip -n %s addr add 10.77.0.2/24 dev eth0 && ip -n %s addr add fd00:77::2/64 dev eth0 "
           "nodad && ip -n %s link set eth0 up && ip -n %s link set peer0 up && "
           "ip -n %s route add default via 10.77.0.1 && ip -n %s neigh add 10.77.0.9 lladdr "
           "02:00:00:00:00:09 dev eth0 nud permanent",
           name, name, name, name, name, name, name, name) != 0) {
        sh("ip netns del %s 2>/dev/null", name);
        return 0;
    }
    *state = strdup(name);
    return 0;
}

static int teardown_ns(void **state)
{
    if (*state) {
        sh("ip netns del %s", (char *)*state);
        free(*state);
    }
    return 0;
}

/* The namespace's tc state and links, as text, to compare. */
static char *snapshot(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "ip -n %s -o link | sed 's/^[0-9]*: //'; tc -n %s qdisc show; "
             "tc -n %s filter show dev eth0 ingress 2>&1",
             name, name, name);
    FILE *p = popen(cmd, "r");
    static char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    pclose(p);
    return strdup(out);
}

static void test_attach_real(void **state)
{
    const char *name = *state;
    if (!name)
        skip();
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", name);
    char *before = snapshot(name);
    static res_net_t n;
    err_t err = ERR_INIT;
    assert_int_equal(res_net_scan(path, &n, &err), 0);
    assert_int_equal(n.n_ifs, 2); /* eth0 and peer0 */
    unsigned e = n.ifs[0].name[0] == 'e' ? 0 : 1;
    assert_string_equal(n.ifs[e].name, "eth0");
    assert_int_equal(n.ifs[e].n_addrs, 2);
    assert_true(n.n_routes >= 1);
    assert_int_equal(n.n_neighs, 1);
    /* keep only eth0 */
    n.ifs[0] = n.ifs[e];
    n.n_ifs = 1;
    /* a failure at every step leaves the namespace as it was */
    for (int step = 1; step <= 6; step++) {
        char v[8];
        snprintf(v, sizeof v, "%d", step);
        setenv("HUSK_NET_FAIL_AT", v, 1);
        assert_true(res_net_attach(&n, &err) < 0);
        assert_non_null(strstr(err_str(&err), "injected"));
        err_clear(&err);
        char *now = snapshot(name);
        if (strcmp(now, before))
            fail_msg("after a failure at step %d:\n%s\nbefore:\n%s", step, now, before);
        free(now);
    }
    unsetenv("HUSK_NET_FAIL_AT");
    assert_int_equal(res_net_attach(&n, &err), 0);
    assert_string_equal(n.ifs[0].tap, "tap0_husk");
    char *during = snapshot(name);
    assert_non_null(strstr(during, "tap0_husk"));
    assert_non_null(strstr(during, "mirred (Egress Redirect to device tap0_husk)"));
    free(during);
    /* a second attach does nothing; a rescan skips our tap */
    assert_int_equal(res_net_attach(&n, &err), 0);
    static res_net_t again;
    assert_int_equal(res_net_scan(path, &again, &err), 0);
    assert_int_equal(again.n_ifs, 2);
    assert_int_equal(res_net_detach(&n, &err), 0);
    char *after = snapshot(name);
    assert_string_equal(after, before);
    free(after);
    /* an ingress qdisc that was there before stays; our filter goes */
    assert_int_equal(sh("tc -n %s qdisc add dev eth0 ingress", name), 0);
    free(before);
    before = snapshot(name);
    assert_int_equal(res_net_attach(&n, &err), 0);
    assert_false(n.ifs[0].qdisc_made);
    assert_int_equal(res_net_detach(&n, &err), 0);
    after = snapshot(name);
    assert_string_equal(after, before);
    free(after);
    free(before);
    assert_false(n.held);
    /* the path unmounted before the detach (podman removes its netns
     * first) while the namespace lives on: the held namespace is cleaned */
    char keep[80];
    snprintf(keep, sizeof keep, "%s-keep", name);
    assert_int_equal(res_net_attach(&n, &err), 0);
    assert_true(n.held);
    assert_int_equal(sh("touch /run/netns/%s && mount --bind %s /run/netns/%s", keep, path, keep), 0);
    assert_int_equal(sh("ip netns del %s", name), 0);
    assert_int_equal(res_net_detach(&n, &err), 0);
    assert_false(n.held);
    char *kept = snapshot(keep);
    sh("ip netns del %s", keep);
    if (strstr(kept, "_husk") || strstr(kept, "mirred"))
        fail_msg("tap or filter left in the namespace after its path went:\n%s", kept);
    free(kept);
    /* detach after the namespace vanished (nobody else holds it) is clean */
    sh("ip netns add %s && ip -n %s link add eth0 type veth peer name peer0", name, name);
    assert_int_equal(res_net_scan(path, &n, &err), 0);
    assert_int_equal(res_net_attach(&n, &err), 0);
    sh("ip netns del %s", name);
    assert_int_equal(res_net_detach(&n, &err), 0);
    assert_false(n.held);
    sh("ip netns add %s", name); /* for the teardown */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_qdisc),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_spec),
        cmocka_unit_test_setup_teardown(test_attach_real, setup_ns, teardown_ns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
